"""Structural novelty on real structures: the truth set of tests/data/structures (TM-align of every pair)."""

from __future__ import annotations

import csv
import gzip
import json
import random
import re
import shutil
from pathlib import Path

import duckdb
import gemmi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas import structural
from atlas.cli import main as atlas_main
from atlas.preflight import predictions_key
from atlas.stats import counts_of
from atlas.tables import PREDICTIONS, STRUCTURAL

ROOT = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def truth_rows(test_data: Path) -> list[dict]:
    with gzip.open(test_data / "structures" / "tm_truth.tsv.gz", "rt") as handle:
        return [{**row, "tm": float(row["tm"])} for row in csv.DictReader(handle, delimiter="\t")]


def query_paths(test_data: Path) -> dict[str, Path]:
    paths = sorted((test_data / "structures").glob("*.pdb.gz")) + sorted(test_data.glob("*esmfold*.pdb"))
    return {path.name.split(".pdb")[0]: path for path in paths}


def schema_default(section: str, key: str):
    import yaml

    return yaml.safe_load(CONFIG_SCHEMA.read_text())["properties"][section]["properties"][key]["default"]


def default_settings() -> structural.SearchSettings:
    return structural.SearchSettings(
        sensitivity=schema_default("structural_novelty", "sensitivity"),
        max_seqs=schema_default("structural_novelty", "max_seqs"),
        threads=2,
        prefilter_mode=schema_default("structural_novelty", "prefilter_mode"),
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory, test_data):
    output = tmp_path_factory.mktemp("structref") / "structure_reference" / "reference.json"
    info = structural.build_reference(test_data / "structures", output)
    return output, info


def test_truth_set_matches_tmalign(test_data):
    """The shipped truth is what tmtools computes (a sample of pairs, both normalisations)."""
    rows = truth_rows(test_data)
    paths = query_paths(test_data)
    assert len(rows) == len(paths) * (len(paths) - 1)
    for row in random.Random(7).sample(rows, 12):
        result = structural.tm_align(
            structural.read_chain(paths[row["query"]]), structural.read_chain(paths[row["target"]])
        )
        assert result.tm_norm_chain1 == pytest.approx(row["tm"], abs=2e-4)


def test_indexed_reference_gives_the_same_hits(tmp_path, test_data, monkeypatch):
    """A large reference gets a precomputed k-mer index; searches through it find the same hits."""
    paths = sorted((test_data / "structures").glob("*.pdb.gz"))[:30]
    queries = {path.name: structural.encode_3di(structural.read_chain(path)) for path in paths}
    settings = default_settings()
    hits = {}
    for minimum in (10**12, 0):
        monkeypatch.setattr(structural, "INDEX_MIN_RESIDUES", minimum)
        output = tmp_path / f"index{minimum}" / "reference.json"
        structural.build_reference(test_data / "structures", output)
        reference = structural.Reference(output)
        assert Path(f"{reference.db}.idx").is_file() == (minimum == 0)
        workdir = tmp_path / f"search{minimum}"
        workdir.mkdir()
        hits[minimum] = structural.search_3di(queries, reference, workdir, settings)
    assert hits[0] == hits[10**12]


def test_reference_build_is_reused_and_keyed_by_content(tmp_path, test_data):
    source = tmp_path / "pdb"
    source.mkdir()
    for name in ("1ake_A.pdb.gz", "4ake_A.pdb.gz", "1ubi_A.pdb.gz"):
        shutil.copy(test_data / "structures" / name, source / name)
    output = tmp_path / "out" / "structure_reference" / "reference.json"
    first = structural.build_reference(source, output)
    assert first["built"] and not first["reused"]
    reference = structural.Reference(output)
    assert len(reference) == 3
    ca, sequence = reference.target("1ubi_A_A")
    chain = structural.read_chain(source / "1ubi_A.pdb.gz")
    assert sequence == chain.sequence and ca.shape == (len(chain.sequence), 3)
    assert abs(ca - chain.ca).max() < 1e-3

    again = structural.build_reference(source, output)
    assert again["reused"] and again["path"] == first["path"]

    # a prebuilt reference is used in place
    prebuilt = structural.build_reference(
        output.parent / first["path"], tmp_path / "other" / "reference.json"
    )
    assert not prebuilt["built"] and len(structural.Reference(tmp_path / "other" / "reference.json")) == 3

    # new content: a new key, a new build; the old one is left alone
    gemmi_structure = gemmi.read_structure(str(test_data / "mgnifams_esmfold_khalifam2_1-4580619181.pdb"))
    gemmi_structure.setup_entities()
    (source / "extra.cif").write_text(gemmi_structure.make_mmcif_document().as_string())
    changed = structural.build_reference(source, output)
    assert not changed["reused"] and changed["path"] != first["path"]
    assert len(structural.Reference(output)) == 4
    assert (output.parent / first["path"] / structural.BUILD_STAMP).is_file()


def test_reference_errors_name_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        structural.build_reference(tmp_path / "missing", tmp_path / "reference.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no protein chain"):
        structural.build_reference(tmp_path / "empty", tmp_path / "reference.json")


def test_3di_of_a_real_structure(test_data):
    chain = structural.read_chain(test_data / "structures" / "1ubi_A.pdb.gz")
    states = structural.encode_3di(chain)
    assert len(states) == len(chain.sequence) == 76
    assert set(states) <= set(structural.THREE_DI_ALPHABET)
    assert len(set(states)) > 5  # a folded chain visits many states


def readme_recall() -> tuple[int, int]:
    """The recall the README states for the defaults: 'recall at the defaults: FOUND of KNOWN'."""
    match = re.search(r"truth-set recall at the defaults: (\d+) of (\d+)", (ROOT / "README.md").read_text())
    assert match, "README.md states no truth-set recall"
    return int(match.group(1)), int(match.group(2))


@pytest.mark.slow
def test_no_false_known_and_recall_as_documented(tmp_path, reference, test_data):
    """Every chain (own entry left out) against the truth set at the schema's defaults."""
    reference_json, _ = reference
    ref = structural.Reference(reference_json)
    chains = {name: structural.read_chain(path) for name, path in query_paths(test_data).items()}
    candidates = structural.search_3di(
        {name: structural.encode_3di(chain) for name, chain in chains.items()},
        ref,
        tmp_path,
        default_settings(),
    )
    best: dict[str, float] = {}
    for row in truth_rows(test_data):
        if (test_data / "structures" / f"{row['target']}.pdb.gz").is_file():
            best[row["query"]] = max(best.get(row["query"], 0.0), row["tm"])
    k = schema_default("structural_novelty", "top_k")
    min_tm = schema_default("structural_novelty", "min_tm")
    found = 0
    for name, chain in chains.items():
        verdict = structural.verify(
            chain, [t for t in candidates[name] if not t.startswith(f"{name}_")], ref, k, min_tm
        )
        assert verdict.verified <= k
        if not verdict.novel:
            assert verdict.tm >= min_tm
            assert best[name] >= min_tm, (
                f"{name} called known (hit {verdict.hit}) but no chain aligns at {min_tm}"
            )
            found += 1
    known = sum(tm >= min_tm for tm in best.values())
    assert (found, known) == readme_recall()


def predictions_table(rows: list[dict]) -> pa.Table:
    full = []
    for row in rows:
        full.append({field.name: row.get(field.name) for field in PREDICTIONS})
    return pa.Table.from_pylist(full, schema=PREDICTIONS)


def mmcif_of(path: Path) -> str:
    structure = gemmi.read_structure(str(path))
    structure.setup_entities()
    return structure.make_mmcif_document().as_string()


def test_structural_chunk_end_to_end(tmp_path, test_data):
    """A predictions chunk of real structures: known and novel calls follow the TM-align truth."""
    source = tmp_path / "reference"
    source.mkdir()
    for name in ("4ake_A", "1ubi_A", "3kpr_A", "3kpr_B", "1bd2_D", "19hc_A", "3enl_A"):
        shutil.copy(test_data / "structures" / f"{name}.pdb.gz", source)
    reference_json = tmp_path / "out" / "structure_reference" / "reference.json"
    assert (
        atlas_main(["structure-reference", "--reference", str(source), "--output", str(reference_json)]) == 0
    )

    queries = {
        "1ake_A": test_data / "structures" / "1ake_A.pdb.gz",  # the closed form of 4ake
        "2k39_A": test_data / "structures" / "2k39_A.pdb.gz",  # ubiquitin by NMR, 1ubi is the crystal
        "3pwp_B": test_data / "structures" / "3pwp_B.pdb.gz",  # beta-2 microglobulin, as 3kpr_B
        "esmfold_v1_esm_readme_example": test_data / "esmfold_v1_esm_readme_example.pdb",
        "mgnifams_esmfold_khalifam1_1-4587088355": test_data / "mgnifams_esmfold_khalifam1_1-4587088355.pdb",
    }
    rows = [
        {
            "id": name,
            "checksum": f"c{index}",
            "status": "ok",
            "mean_plddt": 90.0,
            "ptm": 0.8,
            "structure_format": "mmcif",
            "structure": mmcif_of(path).encode(),
        }
        for index, (name, path) in enumerate(queries.items())
    ]
    rows.append(
        {
            "id": "unsure",
            "checksum": "low",
            "status": "ok",
            "mean_plddt": 40.0,
            "ptm": 0.8,
            "structure_format": "mmcif",
            "structure": rows[0]["structure"],
        }
    )
    rows.append({"id": "broken", "checksum": "failed", "status": "failed", "error": "out of memory"})
    predictions = tmp_path / "predictions.parquet"
    pq.write_table(predictions_table(rows), predictions)
    output = tmp_path / "structural.parquet"
    argv = ["structural", "--predictions", str(predictions), "--reference", str(reference_json)]
    argv += [
        "--output",
        str(output),
        "--min-plddt",
        "70",
        "--min-ptm",
        "0.7",
        "--min-tm",
        "0.5",
        "--top-k",
        "5",
    ]
    argv += ["--sensitivity", "7.5", "--max-seqs", "1000", "--prefilter-mode", "1", "--threads", "2"]
    assert atlas_main(argv) == 0
    table = pq.read_table(output)
    assert table.schema.equals(STRUCTURAL)
    result = {row["checksum"]: row for row in table.to_pylist()}
    assert list(result) == [f"c{index}" for index in range(len(queries))] + ["low"]  # failed: no row

    truth = {(row["query"], row["target"]): row["tm"] for row in truth_rows(test_data)}
    reference_names = [path.name.split(".pdb")[0] for path in source.iterdir()]
    for index, name in enumerate(queries):
        row = result[f"c{index}"]
        best_truth = max(truth[(name, reference_name)] for reference_name in reference_names)
        assert row["confident"] and row["structure_verified"] >= 1
        assert row["structurally_novel"] == (best_truth < 0.5), (name, row)
        if not row["structurally_novel"]:
            hit = row["structure_hit"].rsplit("_", 1)[0]
            assert row["structure_tm"] == pytest.approx(truth[(name, hit)], abs=2e-3)
            assert 0 < row["structure_aligned_length"] <= len(structural.read_chain(queries[name]).sequence)
    assert result["low"]["confident"] is False and result["low"]["structurally_novel"] is None
    # a chunk without one confident prediction (the demo's tiny model often gives such): rows, no search
    nothing = tmp_path / "nothing.parquet"
    argv[argv.index("--output") + 1] = str(nothing)
    argv[argv.index("--min-plddt") + 1] = "100"
    assert atlas_main(argv) == 0
    assert [row["confident"] for row in pq.read_table(nothing).to_pylist()] == [False] * (len(queries) + 1)


def test_prediction_chain_reads_the_fold_steps_mmcif(test_data):
    """prediction_chain reads what atlas.structure writes (a structure stored as mmCIF)."""
    import numpy as np

    from atlas.structure import ATOM37, to_mmcif

    chain = structural.read_chain(test_data / "esmfold_v1_esm_readme_example.pdb")
    positions = np.zeros((len(chain.sequence), len(ATOM37), 3))
    mask = np.zeros((len(chain.sequence), len(ATOM37)))
    for name, coords in (("N", chain.n), ("CA", chain.ca), ("C", chain.c), ("CB", chain.cb)):
        index = ATOM37.index(name)
        present = ~np.isnan(coords).any(axis=1)
        positions[present, index] = coords[present]
        mask[present, index] = 1
    text = to_mmcif(
        entry_id="q",
        sequence=chain.sequence,
        atom_positions=positions,
        atom_mask=mask,
        plddt=np.full(len(chain.sequence), 80.0),
        model_name="esmfold_v1",
    )
    parsed = structural.prediction_chain({"id": "q", "structure_format": "mmcif", "structure": text.encode()})
    assert parsed.sequence == chain.sequence
    assert np.allclose(parsed.ca, chain.ca, atol=1e-3)
    assert structural.encode_3di(parsed) == structural.encode_3di(chain)


@pytest.mark.slow
def test_workflow_adds_structural_rows_and_clusters_drop_by_drop(tmp_path, test_data):
    """Snakemake with the tiny model (every prediction let through): drop 1, then drop 2 appended."""
    import subprocess
    import sys

    import yaml

    def run(drops: list[str], *args: str) -> str:
        config = {
            "drops": drops,
            "outdir": "results",
            "model": "tiny",
            "device": "cpu",
            "chunk_residues": 2000,
            "max_tokens_per_batch": 1024,
            "fold_threads": 1,
            "num_recycles": 0,
            "min_plddt": 0,
            "min_ptm": 0,
            "structural_novelty": {"reference": str(test_data / "structures"), "threads": 1, "top_k": 3},
            "clusters": {"threads": 1},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
        command += ["--configfile", str(tmp_path / "config.yaml"), "--cores", "2", *args]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
        return done.stdout + done.stderr

    drop1, drop2 = str(ROOT / "example" / "drop1.fasta"), str(ROOT / "example" / "drop2.fasta.gz")
    run([drop1])
    results = tmp_path / "results"
    stamp = (results / "structure_reference" / "reference.json").read_text()
    members1 = pq.read_table(results / "clusters" / "drop1" / "members.parquet")
    run([drop1, drop2])
    # the reference is built once; drop 1's clusters and structural rows are not redone
    assert (results / "structure_reference" / "reference.json").read_text() == stamp
    assert pq.read_table(results / "clusters" / "drop1" / "members.parquet").equals(members1)

    for drop in ("drop1", "drop2"):
        predictions = pq.read_table(results / "predictions" / predictions_key("tiny", 0) / drop).to_pylist()
        ok = {row["checksum"] for row in predictions if row["status"] == "ok"}
        rows = pq.read_table(results / "structural" / drop).to_pylist()
        assert {row["checksum"] for row in rows} == ok and all(row["confident"] for row in rows)
        assert all(1 <= row["structure_verified"] <= 3 for row in rows if row["structure_candidates"])
        assert all(
            row["structurally_novel"] == (row["structure_tm"] is None or row["structure_tm"] < 0.5)
            for row in rows
        )
    table = pq.read_table(results / "clusters" / "clusters.parquet").to_pylist()
    folded = {
        row["checksum"]
        for drop in ("drop1", "drop2")
        for row in pq.read_table(results / "predictions" / predictions_key("tiny", 0) / drop).to_pylist()
        if row["status"] == "ok"
    }
    assert {row["checksum"] for row in table} == folded
    assert len({row["cluster"] for row in table}) == sum(row["representative"] for row in table)
    # the atlas carries them: the index's structural and cluster columns, the clusters view, the counts
    searched = {
        row["checksum"]: row
        for drop in ("drop1", "drop2")
        for row in pq.read_table(results / "structural" / drop).to_pylist()
    }
    index_rows = pq.read_table(results / "atlas" / "index.parquet").to_pylist()
    assert {row["checksum"] for row in index_rows} == folded  # every prediction passes min_plddt/min_ptm 0
    cluster_of = {row["checksum"]: row["cluster"] for row in table}
    for row in index_rows:
        assert row["structural_computed"] is True and row["cluster"] == cluster_of[row["checksum"]]
        for name in ("structure_hit", "structure_verified", "structurally_novel"):
            assert row[name] == searched[row["checksum"]][name], name
    stats = counts_of(results)
    assert stats["structural_computed"] is True
    assert stats["total"]["high_confidence_structurally_novel"] == sum(
        row["structurally_novel"] for row in searched.values()
    )
    with duckdb.connect(str(results / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        connection.execute(f"SET VARIABLE atlas_outdir = '{results}'")
        clusters = connection.execute("SELECT cluster, representative, members FROM clusters").fetchall()
    assert sorted(clusters) == sorted(
        (row["cluster"], row["checksum"], row["cluster_size"]) for row in table if row["representative"]
    )
    summary = json.loads((results / "report" / "summary.json").read_text())
    assert summary["structural_computed"] is True and summary["structure_tm"]["searched"] == len(searched)
    dry = run([drop1, drop2], "--dry-run")
    assert "Nothing to be done" in dry or "structural_chunk" not in dry


def write_foldcomp_database(prefix: Path, structures: dict[str, Path]) -> None:
    """A Foldcomp database: MMseqs2-style data, .index, .lookup and .dbtype of compressed structures."""
    import struct

    import foldcomp

    data, index, lookup = b"", [], []
    for key, (name, path) in enumerate(structures.items()):
        text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
        compressed = foldcomp.compress(name, text) + b"\0"
        index.append(f"{key}\t{len(data)}\t{len(compressed)}\n")
        lookup.append(f"{key}\t{name}\t0\n")
        data += compressed
    prefix.write_bytes(data)
    Path(f"{prefix}.index").write_text("".join(index))
    Path(f"{prefix}.lookup").write_text("".join(lookup))
    Path(f"{prefix}.dbtype").write_bytes(struct.pack("<i", 12))


def test_reference_from_a_foldcomp_database(tmp_path, test_data):
    names = ("1ubi_A", "4ake_A", "2k39_A")
    write_foldcomp_database(
        tmp_path / "afdb", {name: test_data / "structures" / f"{name}.pdb.gz" for name in names}
    )
    output = tmp_path / "out" / "reference.json"
    info = structural.build_reference(tmp_path / "afdb", output)
    assert info["built"]
    reference = structural.Reference(output)
    assert len(reference) == 3
    for name in names:
        chain = structural.read_chain(test_data / "structures" / f"{name}.pdb.gz")
        ca, sequence = reference.target(f"{name}_A")
        assert sequence == chain.sequence
        # Foldcomp's reconstruction is lossy: a CA RMSD under 0.2 A (about 0.1 A in its paper)
        assert ((ca - chain.ca) ** 2).sum(axis=1).mean() ** 0.5 < 0.2
    assert structural.build_reference(tmp_path / "afdb", output)["reused"]
