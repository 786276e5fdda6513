"""atlas serve: the explorer's routes (Starlette TestClient) on a synthetic atlas with real mmCIF, every kind
of bad request, and a headless Chromium run on a small atlas folded by the real code with the tiny model."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from Bio.PDB import PDBParser
from starlette.testclient import TestClient
from test_index import make_outdir, make_structural_outdir

from atlas.cli import main as atlas_main
from atlas.fasta import read_fasta
from atlas.fold import dequantize_pae
from atlas.serve.app import create_app
from atlas.tables import PAE_STEP

DATA = Path(__file__).resolve().parent / "data"  # as tests/conftest.py's TEST_DATA


def build_demo(root: Path) -> Path:
    """Two drops (real Prodigal and MGnify proteins, one duplicate across drops) split, folded with the tiny
    model storing PAE, and indexed with the real commands; every ok prediction is in the index."""
    short = 90  # the tiny model folds ~10 residues/s on a shared CPU: keep the demo small
    prodigal = [
        r
        for r in itertools.islice(read_fasta(DATA / "938293.PRJEB85.HG003687.faa"), 200)
        if len(r.sequence) < short
    ][:3]
    mgnify = [
        r
        for r in itertools.islice(read_fasta(DATA / "mgnifam_all_seqs_concat.fa"), 300)
        if len(r.sequence) < short
    ][:2]
    drops = {
        "d1": [(f"{r.id} {r.description}", r.sequence) for r in prodigal],
        "d2": [(f"{r.id} {r.description}", r.sequence) for r in mgnify]
        + [("copy_of_d1", prodigal[0].sequence)],
    }
    outdir = root / "demo"
    earlier: list[str] = []
    for drop, records in drops.items():
        fasta = root / f"{drop}.fasta"
        fasta.write_text("".join(f">{header}\n{sequence}\n" for header, sequence in records))
        manifest = outdir / "chunks" / drop / "manifest.parquet"
        argv = ["split", "--fasta", str(fasta), "--drop", drop, "--manifest", str(manifest)]
        argv += ["--earlier-manifests", *earlier, "--max-length", "400", "--chunk-residues", "2000"]
        assert atlas_main(argv) == 0
        earlier.append(str(manifest))
        for chunk_fasta in sorted(manifest.parent.glob("*.fasta")):
            chunk = chunk_fasta.name[: -len(".fasta")]
            output = outdir / "predictions" / drop / f"{chunk}.parquet"
            argv = [
                "fold",
                "--fasta",
                str(chunk_fasta),
                "--output",
                str(output),
                "--drop",
                drop,
                "--chunk",
                chunk,
            ]
            argv += ["--model", "tiny", "--device", "cpu", "--threads", "2", "--store-pae", "1"]
            assert atlas_main(argv) == 0
    argv = ["index", "--outdir", str(outdir), "--drops", *drops, "--min-plddt", "0", "--min-ptm", "0"]
    argv += ["--predictions-dir", "predictions"]
    assert atlas_main([*argv, "--no-novelty"]) == 0
    return outdir


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    """test_index's atlas with structural novelty rows and clusters."""
    return make_structural_outdir(tmp_path_factory.mktemp("atlas"))


@pytest.fixture(scope="module")
def client(outdir, tmp_path_factory):
    return TestClient(create_app(outdir, tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo"))


def index_rows(outdir: Path) -> list[dict]:
    return pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()


def assert_clean_error(response, status: int, *words: str):
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text and 'File "' not in response.text
    for word in words:
        assert word in response.text


# ------------------------------------------------------------------------------------ search and pages


def test_search_sorts_and_pages_over_the_whole_index(client, outdir):
    rows = index_rows(outdir)
    answer = client.get("/api/search", params={"sort": "length", "order": "asc", "per_page": 3}).json()
    assert answer["total"] == len(rows) and answer["pages"] == -(-len(rows) // 3)
    seen = []
    for page in range(1, answer["pages"] + 1):
        params = {"sort": "length", "order": "asc", "per_page": 3, "page": page}
        seen += client.get("/api/search", params=params).json()["rows"]
    assert sorted(r["id"] for r in seen) == sorted(r["id"] for r in rows)  # every row once
    assert [r["length"] for r in seen] == sorted(r["length"] for r in rows)
    html = client.get("/", params={"sort": "mean_plddt", "per_page": 3, "page": 2})
    assert html.status_code == 200 and html.text.count('<a href="/structure/') == 3
    assert 'rel="prev"' in html.text and "page=3" in html.text  # links keep the sort and page size


def test_search_by_id_checksum_and_sequence_fragment(client, outdir):
    row = next(r for r in index_rows(outdir) if r["id"] == "seq0")
    assert [r["id"] for r in client.get("/api/search", params={"q": "seq0"}).json()["rows"]] == ["seq0"]
    assert [
        r["id"] for r in client.get("/api/search", params={"q": row["checksum"].upper()}).json()["rows"]
    ] == ["seq0"]
    sequence = client.get("/api/structure/seq0").json()["prediction"]["sequence"]
    found = client.get("/api/search", params={"q": sequence[10:22].lower()}).json()["rows"]
    assert [r["id"] for r in found] == ["seq0"]
    assert client.get("/api/search", params={"q": "no-such-thing"}).json()["total"] == 0


def test_filters(client, outdir):
    rows = index_rows(outdir)
    params = {"min_plddt": 85, "max_ptm": 0.9, "min_length": 50, "drop": "d1", "per_page": 200}
    found = {r["id"] for r in client.get("/api/search", params=params).json()["rows"]}
    expected = {
        r["id"]
        for r in rows
        if r["mean_plddt"] >= 85 and r["ptm"] <= 0.9 and r["length"] >= 50 and r["drop"] == "d1"
    }
    assert found == expected and found
    assert (
        client.get("/api/search", params={"novel": "false"}).json()["total"] == 0
    )  # the index holds novel ones
    assert client.get("/api/search", params={"novel": "true"}).json()["total"] == len(rows)


def test_structure_page_and_json(client, outdir):
    page = client.get("/structure/seq0")
    assert page.status_code == 200
    for text in (
        'id="viewer"',
        "/static/3Dmol-min.js",
        "/download/cif/seq0",
        "/download/pdb/seq0",
        "<polyline",
    ):
        assert text in page.text
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    data = client.get("/api/structure/seq0").json()
    assert (
        data["in_atlas"]
        and data["prediction"]["checksum"]
        and len(data["plddt"]) == data["prediction"]["length"]
    )
    assert data["novelty"]["novel"] is True and data["pae_stored"] is False
    # an id whose sequence was folded under another id shows that prediction; a hostile id works as data
    assert client.get("/api/structure/seq0-again").json()["id"] == "seq0"
    assert client.get("/structure/" + quote("../../x", safe="")).status_code == 200
    hit = client.get("/api/structure/seq4").json()  # in no index (not novel), still one prediction
    assert (
        hit["in_atlas"] is False and hit["novelty"]["novel"] is False and hit["novelty"]["identity"] == 0.97
    )


def test_structural_hit_in_search_and_structure_page(client, outdir):
    rows = index_rows(outdir)
    answer = client.get(
        "/api/search", params={"sort": "structure_tm", "order": "asc", "per_page": 200}
    ).json()
    assert {"structure_hit", "structure_tm", "structurally_novel"} <= set(answer["rows"][0])
    assert [r["structure_tm"] for r in answer["rows"]] == pytest.approx(
        sorted(r["structure_tm"] for r in rows)
    )
    novel = client.get("/api/search", params={"structurally_novel": "true", "per_page": 200}).json()["rows"]
    assert {r["id"] for r in novel} == {r["id"] for r in rows if r["structurally_novel"]} != set()
    assert client.get("/api/search", params={"max_tm": 0.5}).json()["total"] == sum(
        r["structure_tm"] <= 0.5 for r in rows
    )
    known = next(r for r in rows if not r["structurally_novel"])
    data = client.get("/api/structure/" + quote(known["id"], safe="")).json()
    assert data["structural"]["structure_hit"] == known["structure_hit"]
    assert data["structural"]["structurally_novel"] is False
    assert data["cluster"]["cluster"] == known["cluster"]
    page = client.get("/structure/" + quote(known["id"], safe="")).text
    assert f"{known['structure_hit']}: TM-score" in page and "novel fold" in page
    listing = client.get("/", params={"structurally_novel": "false"}).text
    assert known["structure_hit"] in listing and "novel fold" in listing
    # seq1 is below the confidence thresholds: not searched
    assert client.get("/api/structure/seq1").json()["structural"] is None
    assert "not searched" in client.get("/structure/seq1").text


def test_downloads_read_back(client):
    cif = client.get("/download/cif/seq0")
    assert cif.status_code == 200 and 'filename="seq0.cif"' in cif.headers["content-disposition"]
    assert len(gemmi.make_structure_from_block(gemmi.cif.read_string(cif.text).sole_block())[0][0]) > 10
    pdb = client.get("/download/pdb/" + quote("a/b", safe=""))
    assert pdb.status_code == 200 and 'filename="a_b.pdb"' in pdb.headers["content-disposition"]
    assert len(list(PDBParser(QUIET=True).get_structure("x", io.StringIO(pdb.text)).get_atoms())) > 50


def test_drops_page(client, outdir):
    drops = client.get("/api/drops").json()["drops"]
    assert [d["drop"] for d in drops] == ["d1", "d2", "d3"]
    added = {}
    for row in index_rows(outdir):
        added[row["drop"]] = added.get(row["drop"], 0) + 1
    assert {d["drop"]: d["added_to_atlas"] for d in drops} == {"d1": added["d1"], "d2": added["d2"], "d3": 0}
    assert drops[2]["duplicate"] == 1 and drops[2]["rejected"] == 1
    page = client.get("/drops")
    assert page.status_code == 200 and "/?drop=d2" in page.text


# -------------------------------------------------------------------------------------- bad requests


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/api/search?min_plddt=high", 400, ["min_plddt", "number"]),
        ("/api/search?min_plddt=nan", 400, ["min_plddt"]),
        ("/api/search?max_ptm=7", 400, ["max_ptm", "between"]),
        ("/api/search?min_length=1.5", 400, ["integer"]),
        ("/api/search?novel=maybe", 400, ["novel"]),
        ("/api/search?structurally_novel=maybe", 400, ["structurally_novel"]),
        ("/api/search?max_tm=2", 400, ["max_tm", "between"]),
        ("/api/search?sort=mmcif", 400, ["sort"]),
        ("/api/search?sort=id;DROP%20TABLE%20x", 400, ["sort"]),
        ("/api/search?order=sideways", 400, ["order"]),
        ("/api/search?drop=nope", 400, ["unknown drop"]),
        ("/api/search?min_pldt=3", 400, ["unknown parameter"]),
        ("/api/search?page=1&page=2", 400, ["twice"]),
        ("/api/search?q=" + "A" * 2000, 400, ["longer"]),
        ("/api/search?per_page=100000", 400, ["per_page"]),
        ("/api/search?per_page=0", 400, ["per_page"]),
        ("/api/search?page=0", 400, ["page"]),
        ("/api/search?page=99999999999", 400, ["page"]),
        ("/api/search?page=99", 404, ["past the last page"]),
        ("/?min_ptm=x", 400, ["min_ptm"]),
        ("/api/structure/no-such-id", 404, ["no record"]),
        ("/structure/no-such-id", 404, ["no record"]),
        ("/api/structure/short1", 404, ["not folded", "rejected"]),
        ("/api/structure/seq0?drop=nope", 400, ["unknown drop"]),
        ("/api/structure/seq0?x=1", 400, ["unknown parameter"]),
        ("/api/pae/seq0", 404, ["no PAE"]),
        ("/download/exe/seq0", 404, ["cif or pdb"]),
        ("/download/cif/seq3", 404, []),  # failed: no structure
        ("/static/%2e%2e/%2e%2e/atlas/atlas.duckdb", 404, []),
        ("/static/..%2F..%2Fexport.py", 404, []),
        ("/structure/..%2F..%2F..%2Fetc%2Fpasswd", 404, ["no record"]),
        ("/download/cif/..%2Fpredictions%2Fd1%2Fb064_0000.parquet", 404, []),
        ("/api/nothing", 404, []),
    ],
)
def test_bad_requests_get_a_clear_4xx(client, url, status, words):
    assert_clean_error(client.get(url), status, *words)


def test_path_tricks_never_serve_a_file_outside_the_static_folder(client, outdir):
    for path in ("/static/../atlas/atlas.duckdb", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd"):
        response = client.get(path)
        assert (
            response.status_code == 404
            and b"DUCK" not in response.content
            and b"root:" not in response.content
        )
    # a drop or chunk name in the index cannot point the structure reader outside the atlas
    atlas = client.app.state.atlas
    assert atlas._stage_file("predictions", "../../..", "etc/passwd") is None


def test_a_new_index_is_served_without_a_restart(tmp_path):
    outdir = make_outdir(tmp_path)
    cache = tmp_path / "cache"
    client = TestClient(create_app(outdir, cache))
    before = client.get("/api/search").json()["total"]
    assert before == len(index_rows(outdir)) and len(list(cache.glob("*.duckdb"))) == 1
    # the index job replaces index.parquet and atlas.duckdb (here with lower thresholds: more rows)
    argv = [
        "index",
        "--outdir",
        str(outdir),
        "--drops",
        "d1",
        "d2",
        "d3",
        "--min-plddt",
        "0",
        "--min-ptm",
        "0",
        "--predictions-dir",
        "predictions",
    ]
    assert atlas_main([*argv, "--novelty"]) == 0
    after = client.get("/api/search").json()["total"]
    assert after == len(index_rows(outdir)) > before
    assert len(list(cache.glob("*.duckdb"))) == 1  # the copy of the old index is gone


def test_missing_atlas_is_a_clear_error(tmp_path, capsys):
    assert atlas_main(["serve", "--outdir", str(tmp_path)]) == 1
    assert "no atlas database" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the demo atlas: PAE, browser


@pytest.mark.slow
def test_pae_is_stored_quantized_and_served(demo, tmp_path_factory):
    table = pq.read_table(next((demo / "predictions").rglob("*.parquet"))).to_pylist()
    client = TestClient(create_app(demo, tmp_path_factory.mktemp("cache")))
    for row in table:
        pae = dequantize_pae(row["pae"], row["length"])
        assert len(row["pae"]) == row["length"] ** 2
        assert abs(float(pae.max()) - row["max_pae"]) <= PAE_STEP / 2 + 1e-6  # quantized to 0.5 A
        assert pae.min() >= 0 and pae.max() <= 31.75  # ESMFold's PAE head spans 0-31.75 A
        served = client.get(f"/api/pae/{quote(row['id'], safe='')}")
        assert served.content == row["pae"] and served.headers["x-pae-length"] == str(row["length"])
        assert 'id="pae"' in client.get(f"/structure/{quote(row['id'], safe='')}").text


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
    "--force-device-scale-factor=1", "--window-size=1280,1000", "--virtual-time-budget=20000",
]  # fmt: skip


def chromium(tmp_path: Path, url: str, *action: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    profile = tempfile.mkdtemp(dir=tmp_path, prefix="profile-")  # a fresh profile each run
    result = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *action, url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@contextlib.contextmanager
def running_server(outdir: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(outdir, outdir.parent / "serve-cache")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="no chromium")
def test_headless_chromium_search_and_3d_view(demo, tmp_path):
    from PIL import Image

    rows = index_rows(demo)
    with running_server(demo) as base:
        home = chromium(tmp_path, base + "/", "--dump-dom")
        assert 'id="results"' in home and home.count('href="/structure/') == len(rows)
        target = rows[0]
        found = chromium(tmp_path, f"{base}/?{urlencode({'q': target['id'][:-1]})}", "--dump-dom")
        assert f">{target['id']}</a>" in found  # a search returns rows
        page = f"{base}/structure/{quote(target['id'], safe='')}"
        dom = chromium(tmp_path, page, "--dump-dom")
        assert 'data-viewer="drawn"' in dom and 'data-pae="drawn"' in dom
        left, top, width, height = map(
            int, re.search(r'data-viewer-box="([0-9,]+)"', dom).group(1).split(",")
        )
        shot = tmp_path / "structure.png"
        chromium(tmp_path, page, f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    canvas = pixels[top + 2 : top + height - 2, left + 2 : left + width - 2]
    assert canvas.size and canvas.std() > 5, "the 3D viewer drew nothing"
    drawn = (np.abs(canvas - 255).sum(axis=2) > 30).sum()  # pixels not white background
    assert drawn > 200, f"only {drawn} coloured pixels in the viewer"


def test_header_columns_of_the_index_become_filters_and_facts(tmp_path):
    """The index carries the split's header columns (set here to known values): `fragment` and
    `header=KEY=VALUE` filter on them, the results list the description."""
    outdir = make_outdir(tmp_path)
    path = outdir / "atlas" / "index.parquet"
    table = pq.read_table(path)
    count = table.num_rows
    columns = {
        "description": pa.array([f"protein {i} FL={i % 2}" for i in range(count)]),
        "is_fragment": pa.array([i % 2 == 0 for i in range(count)]),
        "header_fields": pa.array(
            [[("FL", str(i % 2))] for i in range(count)], pa.map_(pa.string(), pa.string())
        ),
    }
    for name, values in columns.items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, values) if index >= 0 else table.append_column(name, values)
    pq.write_table(table, path)
    client = TestClient(create_app(outdir, tmp_path / "cache"))
    fragments = client.get("/api/search", params={"fragment": "true", "per_page": 200}).json()["rows"]
    assert len(fragments) == (count + 1) // 2 and all(r["is_fragment"] for r in fragments)
    full = client.get("/api/search", params={"header": "FL=1", "per_page": 200}).json()["rows"]
    assert len(full) == count // 2 and all(r["description"].endswith("FL=1") for r in full)
    assert client.get("/api/search", params={"header": "FL=1", "fragment": "true"}).json()["total"] == 0
    assert_clean_error(client.get("/api/search", params={"header": "no equals sign"}), 400, "KEY=VALUE")
    assert "FL=" in client.get("/", params={"fragment": "false"}).text
