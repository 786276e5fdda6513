"""`atlas report`: summary.json against counts taken straight from the Parquet files, valid non-blank PNGs,
and an index.html that a headless Chromium opens offline with every image decoded."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas import index, report
from atlas.counts import format_counts
from atlas.stats import counts_of, format_stats
from atlas.tables import FOLD_RESIDUES_KEY, FOLD_SECONDS_KEY, STRUCTURAL

AMINO = "ACDEFGHIKLMNPQRSTVWY"
PNG_FILES = [filename for filename, _, _ in report.PLOTS.values()]
MIN_PLDDT, MIN_PTM = 70.0, 0.7
MIN_TM = 0.5


def md5(sequence: str) -> str:
    return hashlib.md5(sequence.upper().encode()).hexdigest()


def write_drop(
    outdir: Path,
    drop: str,
    rng: random.Random,
    n: int,
    seen: set[str],
    *,
    novelty: bool,
    benchmark: bool = True,
    structural: bool = False,
):
    """A realistic drop: manifest (queued, duplicate, rejected with reasons), two chunks of predictions (with
    failed rows and the heavy structure/plddt columns, and the fold job's timing in the file's metadata, as
    atlas fold writes it), novelty per chunk, and (structural) structural novelty rows per chunk as atlas
    structural writes them: the confident predictions with a verified hit or none."""
    manifest = []
    queued = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.08:
            seq = "".join(rng.choice(AMINO) for _ in range(rng.randint(3, 15)))
            manifest.append(
                (f"{drop}_{i}", seq, "rejected", f"too short: {len(seq)} residues < min_length 16")
            )
        elif roll < 0.12:
            seq = "".join(rng.choice(AMINO) for _ in range(rng.randint(1281, 3000)))
            manifest.append(
                (f"{drop}_{i}", seq, "rejected", f"too long: {len(seq)} residues > max_length 1280")
            )
        elif roll < 0.14:
            seq = "ACD12" * rng.randint(5, 12)
            reason = "invalid characters '1', '2' (first at residue 4); residues must be letters A-Z"
            manifest.append((f"{drop}_{i}", seq, "rejected", reason))
        elif roll < 0.145:
            manifest.append((f"{drop}_{i}", "", "rejected", "empty sequence"))
        elif roll < 0.24 and seen:
            seq = rng.choice(sorted(seen))
            manifest.append((f"{drop}_{i}", seq, "duplicate", f"duplicate of x in drop {drop}"))
        else:
            seq = "".join(rng.choice(AMINO) for _ in range(rng.randint(16, 700)))
            if seq in seen:
                continue
            seen.add(seq)
            queued.append((f"{drop}_{i}", seq))
            manifest.append((f"{drop}_{i}", seq, "queued", ""))
    chunk_of = {}
    for rid, seq in queued:
        chunk_of[rid] = "b0256_000" if len(seq) <= 256 else "b0768_000"
    chunks_dir = outdir / "chunks" / drop
    chunks_dir.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "id": [m[0] for m in manifest],
                "drop": [drop] * len(manifest),
                "checksum": [md5(m[1]) for m in manifest],
                "length": pa.array([len(m[1]) for m in manifest], pa.int32()),
                "status": [m[2] for m in manifest],
                "reason": [m[3] or None for m in manifest],
                "chunk": [chunk_of.get(m[0]) for m in manifest],
            }
        ),
        chunks_dir / "manifest.parquet",
    )
    for chunk in sorted(set(chunk_of.values())):
        rows = [(rid, seq) for rid, seq in queued if chunk_of[rid] == chunk]
        (chunks_dir / f"{chunk}.fasta").write_text("".join(f">{rid}\n{seq}\n" for rid, seq in rows))
        preds = {
            k: [] for k in ("id", "checksum", "sequence", "length", "mean_plddt", "ptm", "num_conf", "plddt")
        }
        preds.update(
            {
                k: []
                for k in (
                    "max_pae",
                    "structure_format",
                    "structure",
                    "model",
                    "num_recycles",
                    "status",
                    "error",
                )
            }
        )
        nov = {
            k: [] for k in ("checksum", "best_hit", "identity", "query_coverage", "target_coverage", "evalue")
        }
        nov["novel"] = []
        folds = []
        for rid, seq in rows:
            failed = rng.random() < 0.07
            centre = rng.choice([rng.gauss(45, 10), rng.gauss(80, 8)])
            plddt = [] if failed else [min(100.0, max(0.0, rng.gauss(centre, 8))) for _ in range(len(seq))]
            mean = float(np.mean(plddt)) if plddt else None
            ptm = None if failed else min(1.0, max(0.0, (mean or 0) / 100 + rng.gauss(0, 0.12)))
            preds["id"].append(rid)
            preds["checksum"].append(md5(seq))
            preds["sequence"].append(seq)
            preds["length"].append(len(seq))
            preds["mean_plddt"].append(mean)
            preds["ptm"].append(ptm)
            preds["num_conf"].append(None if failed else sum(p > 70 for p in plddt))
            preds["plddt"].append(plddt)
            preds["max_pae"].append(None if failed else 31.75)
            preds["structure_format"].append(None if failed else "mmcif")
            preds["structure"].append(None if failed else b"data_x\n" + b"ATOM ...\n" * 50)
            preds["model"].append("facebook/esmfold_v1")
            preds["num_recycles"].append(4)
            preds["status"].append("failed" if failed else "ok")
            preds["error"].append("CUDA out of memory" if failed else None)
            hit = rng.random() < 0.7
            identity = (
                (rng.uniform(0.85, 1.0) if rng.random() < 0.4 else rng.uniform(0.2, 0.9)) if hit else None
            )
            coverage = rng.uniform(0.5, 1.0) if hit else None
            nov["checksum"].append(md5(seq))
            nov["best_hit"].append(f"UniRef90_{rng.randint(1, 10**6)}" if hit else None)
            nov["identity"].append(identity)
            nov["query_coverage"].append(coverage)
            nov["target_coverage"].append(coverage)
            nov["evalue"].append(1e-10 if hit else None)
            nov["novel"].append(not (hit and identity >= 0.9 and coverage >= 0.8))
            if not failed:
                confident = mean >= MIN_PLDDT and ptm >= MIN_PTM
                tm = rng.choice([None, rng.uniform(0.2, 0.95), rng.uniform(0.2, 0.95)]) if confident else None
                folds.append(
                    {
                        "checksum": md5(seq),
                        "confident": confident,
                        "structure_hit": None if tm is None else f"{rng.randint(1, 9)}abc_A",
                        "structure_tm": tm,
                        "structure_aligned_length": None if tm is None else int(tm * len(seq)),
                        "structure_candidates": (0 if tm is None else 7) if confident else None,
                        "structure_verified": (0 if tm is None else 3) if confident else None,
                        "structurally_novel": (tm is None or tm < MIN_TM) if confident else None,
                    }
                )
        table = pa.table(preds)
        table = table.append_column("drop", pa.array([drop] * len(rows))).append_column(
            "chunk", pa.array([chunk] * len(rows))
        )
        if benchmark:
            residues = sum(len(seq) for _, seq in rows)
            seconds = residues / rng.uniform(50, 400)
            table = table.replace_schema_metadata(
                {FOLD_SECONDS_KEY: repr(seconds), FOLD_RESIDUES_KEY: str(residues)}
            )
        (outdir / "predictions" / drop).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, outdir / "predictions" / drop / f"{chunk}.parquet")
        if novelty:
            (outdir / "novelty" / drop).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.table(nov), outdir / "novelty" / drop / f"{chunk}.parquet")
        if structural:
            (outdir / "structural" / drop).mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(folds, schema=STRUCTURAL)
            pq.write_table(table, outdir / "structural" / drop / f"{chunk}.parquet")


def build_outdir(
    tmp_path: Path, drops=("drop1", "drop2", "drop3"), *, novelty=True, seed=7, n=140, structural=False
) -> Path:
    rng = random.Random(seed)
    outdir = tmp_path / "results"
    seen: set[str] = set()
    for drop in drops:
        benchmark = drop != drops[-1] or len(drops) == 1
        write_drop(outdir, drop, rng, n, seen, novelty=novelty, benchmark=benchmark, structural=structural)
    return outdir


def expected_counts(outdir: Path, drops, novelty: bool, structural: bool = False) -> dict:
    """Counts computed independently with pyarrow, straight from the files."""
    result = {}
    for drop in drops:
        manifest = pq.read_table(outdir / "chunks" / drop / "manifest.parquet").to_pylist()
        status = Counter(row["status"] for row in manifest)
        reasons = Counter(
            re.match(r"[a-z_ ]*[a-z]", row["reason"]).group(0).replace("characters", "character")
            for row in manifest
            if row["status"] == "rejected"
        )
        preds, nov = [], {}
        for path in sorted((outdir / "predictions" / drop).glob("*.parquet")):
            preds += pq.read_table(
                path, columns=["checksum", "status", "mean_plddt", "ptm", "length"]
            ).to_pylist()
        if novelty:
            for path in sorted((outdir / "novelty" / drop).glob("*.parquet")):
                nov.update({row["checksum"]: row["novel"] for row in pq.read_table(path).to_pylist()})
        fold_novel = {}
        for path in sorted((outdir / "structural" / drop).glob("*.parquet")) if structural else []:
            rows = pq.read_table(path).to_pylist()
            fold_novel.update(
                {row["checksum"]: row["structurally_novel"] for row in rows if row["confident"]}
            )
        ok = [p for p in preds if p["status"] == "ok"]
        high = [p for p in ok if p["mean_plddt"] >= MIN_PLDDT and p["ptm"] >= MIN_PTM]
        result[drop] = {
            "records": len(manifest),
            "queued": status["queued"],
            "duplicates": status["duplicate"],
            "rejected": status["rejected"],
            "rejected_by_reason": dict(reasons),
            "folded": len(ok),
            "failed": len(preds) - len(ok),
            "pending": status["queued"] - len(preds),
            "high_confidence": len(high),
            "novel": sum(bool(nov.get(p["checksum"])) for p in ok) if novelty else None,
            "high_confidence_novel": sum(bool(nov.get(p["checksum"])) for p in high) if novelty else None,
            "high_confidence_structurally_novel": sum(bool(fold_novel.get(p["checksum"])) for p in high)
            if structural
            else None,
            "high_confidence_novel_both": sum(
                bool(fold_novel.get(p["checksum"]) and nov.get(p["checksum"])) for p in high
            )
            if structural and novelty
            else None,
            "folded_residues": sum(p["length"] for p in ok),
        }
    return result


def stage_files(outdir: Path, drops, novelty: bool = True) -> report.StageFiles:
    """What the workflow declares: every manifest, predictions, novelty and structural file of the drops."""
    return report.StageFiles(
        [str(outdir / "chunks" / d / "manifest.parquet") for d in drops if (outdir / "chunks" / d).is_dir()],
        [str(p) for d in drops for p in sorted((outdir / "predictions" / d).glob("*.parquet"))],
        [str(p) for d in drops for p in sorted((outdir / "novelty" / d).glob("*.parquet"))]
        if novelty
        else [],
        [str(p) for d in drops for p in sorted((outdir / "structural" / d).glob("*.parquet"))],
    )


def run_report(outdir: Path, drops, novelty: bool, structural: bool = False) -> dict:
    settings = report.ReportSettings(
        drops=list(drops),
        min_plddt=MIN_PLDDT,
        min_ptm=MIN_PTM,
        novelty=novelty,
        max_identity=0.9,
        min_coverage=0.8,
        min_length=16,
        max_length=1280,
        structural=structural,
        min_tm=MIN_TM,
    )
    files = stage_files(outdir, drops)  # stale novelty files too: novelty=False must ignore them
    report.write_report(files, outdir / "report", settings, index=outdir / "atlas" / "index.parquet")
    return json.loads((outdir / "report" / "summary.json").read_text())


def build_index(outdir: Path, drops, novelty: bool = True, structural: bool = False) -> None:
    files = stage_files(outdir, drops, novelty)
    staged = outdir / "atlas" / "staged"
    index.build_index(
        files.manifests,
        files.predictions,
        files.novelty,
        staged / "index.parquet",
        staged / "atlas.duckdb",
        list(drops),
        MIN_PLDDT,
        MIN_PTM,
        novelty,
        structural=files.structural,
        structural_computed=structural,
    )


def assert_png_ok(path: Path) -> None:
    from matplotlib import image

    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 300, pixels.shape
    assert float(pixels[..., :3].std()) > 0.02, f"{path.name} looks blank"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("full")
    drops = ["drop1", "drop2", "drop3"]
    outdir = build_outdir(tmp_path, drops, structural=True)
    build_index(outdir, drops, structural=True)
    return outdir, drops, run_report(outdir, drops, True, structural=True)


def test_summary_counts_match_parquet(full):
    outdir, drops, summary = full
    expected = expected_counts(outdir, drops, novelty=True, structural=True)
    for drop in drops:
        assert summary["counts"]["per_drop"][drop] == expected[drop], drop
    total = summary["counts"]["total"]
    keys = ("records", "rejected", "duplicates", "folded", "failed", "high_confidence", "novel")
    for key in (*keys, "high_confidence_structurally_novel", "high_confidence_novel_both"):
        assert total[key] == sum(expected[d][key] for d in drops), key
    # confident predictions novel by structure (not all), and both ways (at most either way)
    assert 0 < total["high_confidence_structurally_novel"] < total["high_confidence"]
    assert 0 < total["high_confidence_novel_both"] <= total["high_confidence_novel"]
    assert total["high_confidence_novel_both"] <= total["high_confidence_structurally_novel"]
    reasons = Counter()
    for drop in drops:
        reasons.update(expected[drop]["rejected_by_reason"])
    assert total["rejected_by_reason"] == dict(reasons)
    # the fixture exercises every stage
    assert total["failed"] > 0 and total["duplicates"] > 0 and total["high_confidence"] > 0
    assert set(reasons) >= {"too short", "too long", "invalid character"}


def test_summary_agrees_with_the_atlas_index(full):
    outdir, _, summary = full
    rows = pq.ParquetFile(outdir / "atlas" / "index.parquet").metadata.num_rows
    assert rows > 0
    assert summary["atlas_index_rows"] == rows == summary["counts"]["total"]["high_confidence_novel"]


def test_summary_metadata(full):
    outdir, drops, summary = full
    assert summary["drops"] == drops
    assert summary["thresholds"]["min_plddt"] == MIN_PLDDT and summary["thresholds"]["min_ptm"] == MIN_PTM
    assert summary["novelty_computed"] is True
    assert summary["model"] == "facebook/esmfold_v1"
    software = summary["software"]
    for name in ("atlas", "torch", "transformers", "mmseqs", "duckdb", "snakemake"):
        assert name in software
    assert software["duckdb"] and software["snakemake"] and software["atlas"]
    # timing is recorded for drop1 and drop2 only (2 chunks each): residues / seconds
    throughput = summary["fold_throughput"]
    assert throughput["chunks"] == 4
    for row in throughput["per_chunk"]:
        table = pq.read_table(
            outdir / "predictions" / row["drop"] / f"{row['chunk']}.parquet", columns=["length"]
        )
        assert row["residues"] == sum(table.column("length").to_pylist())
        assert row["residues_per_second"] == pytest.approx(row["residues"] / row["seconds"], rel=1e-3)


def test_stage_counts_is_the_summary(full):
    outdir, drops, summary = full
    counts = counts_of(outdir)  # `atlas stats`: through atlas.duckdb, as the index was built
    assert counts["drops"] == drops
    assert counts["per_drop"] == summary["counts"]["per_drop"]
    assert counts["total"] == summary["counts"]["total"]
    assert summary["counts"]["invariant"] is True
    assert "high confidence" in format_counts(counts) and "records in" in format_counts(counts)


def test_report_step_reads_only_the_declared_inputs(full, tmp_path):
    """The rule's script entry point: the inputs, params and log of Snakemake's `snakemake` object."""
    outdir, drops, summary = full
    files = stage_files(outdir, drops[:1])
    job = SimpleNamespace(
        input=SimpleNamespace(
            manifests=files.manifests,
            predictions=files.predictions,
            novelty=files.novelty,
            structural=files.structural,
            index=str(outdir / "atlas" / "index.parquet"),
        ),
        output=SimpleNamespace(summary=str(tmp_path / "report" / "summary.json")),
        params={
            "drops": drops[:1],
            "min_plddt": MIN_PLDDT,
            "min_ptm": MIN_PTM,
            "novelty": True,
            "max_identity": 0.9,
            "min_coverage": 0.8,
            "min_length": 16,
            "max_length": 1280,
            "structural": True,
            "min_tm": MIN_TM,
            "novelty_queries": "confident",
        },
        log=[str(tmp_path / "report.log")],
    )
    assert report.run_report_step(job) == 0
    written = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert written["drops"] == drops[:1]
    assert written["counts"]["per_drop"]["drop1"] == summary["counts"]["per_drop"]["drop1"]
    assert "records in" in (tmp_path / "report.log").read_text()


def test_pngs_valid_and_not_blank(full):
    outdir, _, summary = full
    assert sorted(summary["plots"].values()) == sorted(PNG_FILES)
    for name in PNG_FILES:
        assert_png_ok(outdir / "report" / name)


def test_html_is_self_contained(full):
    outdir, drops, summary = full
    page = (outdir / "report" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(PNG_FILES)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<link" not in page and "<script" not in page
    for drop in drops:
        assert drop in page
    assert "too long" in page
    assert f"{summary['counts']['total']['records']:,}" in page


def test_page_names_the_top_predictions_and_the_failed_ids(full):
    outdir, drops, summary = full
    top = summary["top_predictions"]
    assert 0 < len(top) <= 50
    scores = [row["mean_plddt"] * row["ptm"] for row in top]
    assert scores == sorted(scores, reverse=True)
    index_ids = set(
        pq.read_table(outdir / "atlas" / "index.parquet", columns=["id"]).column("id").to_pylist()
    )
    assert {row["id"] for row in top} <= index_ids  # confident and novel, as the index
    failed = summary["failed_predictions"]
    assert failed["total"] == summary["counts"]["total"]["failed"] and failed["first"]
    page = (outdir / "report" / "index.html").read_text()
    assert f'<a href="/structure/{top[0]["id"]}">{top[0]["id"]}</a>' in page
    assert all(row["id"] in page for row in failed["first"]) and "CUDA out of memory" in page


def test_empty_outdir_gives_no_data_panels(tmp_path):
    outdir = tmp_path / "empty"
    outdir.mkdir()
    summary = run_report(outdir, ["nothing"], False)
    assert summary["counts"]["total"]["records"] == 0
    assert summary["counts"]["total"]["novel"] is None
    for name in PNG_FILES:
        assert_png_ok(outdir / "report" / name)


def test_no_novelty_and_tiny_data(tmp_path):
    drops = ["only"]
    outdir = build_outdir(tmp_path, drops, novelty=False, n=3, seed=3)
    summary = run_report(outdir, drops, False)
    expected = expected_counts(outdir, drops, novelty=False)
    assert summary["counts"]["per_drop"]["only"] == expected["only"]
    assert summary["novelty_computed"] is False
    assert summary["counts"]["total"]["high_confidence_novel"] is None
    # no structure reference: said plainly, never zeros
    assert summary["structural_computed"] is False
    assert summary["counts"]["total"]["high_confidence_structurally_novel"] is None
    page = (outdir / "report" / "index.html").read_text()
    assert "Structural novelty was not computed" in page and "not computed (no structure reference)" in page
    text = format_stats(counts_of(outdir), outdir)  # `atlas stats` before any index: over the files
    assert "structural novelty not computed (no structure reference" in text
    row = next(line for line in text.splitlines() if line.startswith("high confidence, novel by structure"))
    assert row.split()[-2:] == ["n/a", "n/a"]
    for name in PNG_FILES:
        assert_png_ok(outdir / "report" / name)


def test_no_novelty_ignores_stale_novelty_files(tmp_path):
    drops = ["d1"]
    outdir = build_outdir(tmp_path, drops, novelty=True, n=30)
    summary = run_report(outdir, drops, False)
    assert summary["counts"]["total"]["novel"] is None
    assert "max_identity" not in summary["thresholds"]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="needs a headless Chromium: apt-get install -y chromium")
def test_html_renders_in_headless_chromium(full, tmp_path):
    """Chromium opens the page offline; an injected script writes how many images decoded into the DOM."""
    outdir, _, _ = full
    page = (outdir / "report" / "index.html").read_text()
    probe = (
        "<script>window.addEventListener('load', function () {"
        "var imgs = Array.from(document.images);"
        "var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;"
        "document.body.setAttribute('data-images', imgs.length + '/' + ok);"
        "});</script>"
    )
    probed = tmp_path / "probe.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": profile}
        )
    assert out.returncode == 0, out.stderr[-2000:]
    match = re.search(r'data-images="(\d+)/(\d+)"', out.stdout)
    assert match, "the load probe did not run:\n" + out.stdout[:500] + out.stderr[-1000:]
    assert match.group(1) == match.group(2) == str(len(PNG_FILES))


def test_structure_tm_plot_and_page(full):
    """The TM-score plot counts the confident predictions searched; the page shows their structural hits."""
    outdir, drops, summary = full
    rows = [
        row
        for drop in drops
        for path in sorted((outdir / "structural" / drop).glob("*.parquet"))
        for row in pq.read_table(path).to_pylist()
        if row["confident"]
    ]
    assert summary["structure_tm"] == {
        "searched": len(rows),
        "no_hit": sum(row["structure_tm"] is None for row in rows),
        "novel": sum(row["structurally_novel"] for row in rows),
    }
    assert summary["thresholds"]["min_tm"] == MIN_TM and summary["structural_computed"] is True
    hits = {row["checksum"]: row["structure_hit"] for row in rows}
    index_rows = pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()
    by_id = {row["id"]: row for row in index_rows}
    for row in summary["top_predictions"]:
        assert row["structure_hit"] == hits[by_id[row["id"]]["checksum"]] == by_id[row["id"]]["structure_hit"]
    page = (outdir / "report" / "index.html").read_text()
    assert "novel by structure" in page and "TM-score to the nearest reference structure" in page
    assert any(row["structure_hit"] and row["structure_hit"] in page for row in summary["top_predictions"])
    assert f"{summary['counts']['total']['high_confidence_structurally_novel']:,}" in page
