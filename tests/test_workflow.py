"""End to end through Snakemake: drop 1, then drop 2 appended (incremental), then a rerun with nothing new.

Real `tiny` ESMFold on CPU, real MMseqs2 against the bundled E. coli reference, real DuckDB.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from atlas.structure import render_mmcif

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DROP1 = ROOT / "example" / "drop1.fasta"
DROP2 = ROOT / "example" / "drop2.fasta.gz"
REFERENCE = ROOT / "example" / "reference.fasta"
# the tiny model with num_recycles 0: the folder of its prediction set (docs/SPEC.md)
PREDICTIONS = Path("predictions") / "tiny-r0"
JOB_HEADER = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def xopen(path: Path):
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


def run_snakemake(workdir: Path, drops: list[Path], *args: str, **settings) -> str:
    config = {
        "drops": [str(path) for path in drops],
        "outdir": "results",
        "model": "tiny",
        "device": "cpu",
        "chunk_residues": 2000,
        "max_tokens_per_batch": 1024,
        "fold_threads": 1,
        "num_recycles": 0,
        # the tiny model's confidences are random: keep every prediction so the index is not empty
        "min_plddt": 0,
        "min_ptm": 0,
        "novelty": {"reference": str(REFERENCE), "threads": 1},
        **settings,
    }
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", str(configfile), "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "\n".join(
            f"== {log}\n{log.read_text()[-3000:]}" for log in (workdir / "results" / "logs").rglob("*.log")
        )
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-6000:]}\n{logs}")
    return output


def planned_jobs(dry_run_output: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs: list[tuple[str, dict[str, str]]] = []
    for line in dry_run_output.splitlines():
        if header := JOB_HEADER.match(line):
            jobs.append((header.group(1), {}))
        elif (wildcards := WILDCARDS.match(line)) and jobs:
            jobs[-1][1].update(pair.split("=", 1) for pair in wildcards.group(1).split(", "))
    return jobs


def file_digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def drop_outputs(results: Path, drop: str) -> dict[str, str]:
    digests = {}
    for stage in ("chunks", str(PREDICTIONS), "novelty"):
        stage_digests = file_digests(results / stage / drop)
        digests.update({f"{stage}/{name}": digest for name, digest in stage_digests.items()})
    return digests


def chunk_names(results: Path, drop: str) -> set[str]:
    return {path.stem for path in (results / "chunks" / drop).glob("*.fasta")}


@pytest.fixture(scope="module")
def incremental_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("atlas")
    results = workdir / "results"
    run: dict = {"workdir": workdir, "results": results}

    run_snakemake(workdir, [DROP1])
    run["drop1_after_first_run"] = drop_outputs(results, "drop1")

    run["dry_run_new_drop"] = planned_jobs(run_snakemake(workdir, [DROP1, DROP2], "--dry-run"))
    # once drop 2 is split, its fold and novelty jobs are known
    run_snakemake(workdir, [DROP1, DROP2], "results/chunks/drop2/manifest.parquet")
    run["dry_run_after_split"] = planned_jobs(run_snakemake(workdir, [DROP1, DROP2], "--dry-run"))
    run_snakemake(workdir, [DROP1, DROP2])
    run["drop1_after_second_run"] = drop_outputs(results, "drop1")

    run["dry_run_nothing_new"] = planned_jobs(run_snakemake(workdir, [DROP1, DROP2], "--dry-run"))
    return run


def column_values(path_glob: str, column: str) -> list:
    return [row[0] for row in duckdb.sql(f"SELECT {column} FROM read_parquet('{path_glob}')").fetchall()]


def test_first_run_folds_every_queued_sequence(incremental_run):
    results = incremental_run["results"]
    manifest = pq.read_table(results / "chunks" / "drop1" / "manifest.parquet").to_pylist()
    queued = {row["checksum"] for row in manifest if row["status"] == "queued"}
    assert queued, "the example drop queues sequences"
    assert {row["status"] for row in manifest} == {"queued", "duplicate", "rejected"}
    predictions = pq.read_table(results / PREDICTIONS / "drop1").to_pylist()
    assert sorted(row["checksum"] for row in predictions) == sorted(queued)
    assert all(row["status"] == "ok" and render_mmcif(row).startswith("data_") for row in predictions)
    novelty = pq.read_table(results / "novelty" / "drop1").to_pylist()
    assert sorted(row["checksum"] for row in novelty) == sorted(queued)
    # drop 1 holds three E. coli proteins that are in the reference: found, not novel
    assert sum(not row["novel"] for row in novelty) >= 3


def test_new_drop_schedules_no_job_for_the_first_drop(incremental_run):
    jobs = incremental_run["dry_run_new_drop"]
    assert ("split_drop", {"drop": "drop2"}) in jobs
    assert all(wildcards.get("drop") != "drop1" for _, wildcards in jobs)


def test_dry_run_after_split_lists_fold_and_novelty_jobs_of_new_chunks_only(incremental_run):
    results = incremental_run["results"]
    jobs = incremental_run["dry_run_after_split"]
    for rule in ("fold_chunk", "novelty_chunk"):
        chunks = {(wc["drop"], wc["chunk"]) for name, wc in jobs if name == rule}
        assert chunks == {("drop2", chunk) for chunk in chunk_names(results, "drop2")}
    assert {name for name, _ in jobs} <= {
        "fold_chunk",
        "novelty_search",
        "novelty_chunk",
        "atlas_index",
        "report",
        "all",
        "drop_lookup",
        "drop_outcomes",
        "structural_chunk",
        "cluster_drop",
        "clusters_table",
    }
    for rule in ("drop_lookup", "drop_outcomes", "cluster_drop"):  # drop1's lookups, outcomes, clusters stay
        assert {wc["drop"] for name, wc in jobs if name == rule} <= {"drop2"}


def test_first_drop_outputs_are_byte_identical_after_the_second(incremental_run):
    assert incremental_run["drop1_after_second_run"] == incremental_run["drop1_after_first_run"]


def test_repeated_sequences_are_not_folded_again(incremental_run):
    results = incremental_run["results"]
    manifest2 = pq.read_table(results / "chunks" / "drop2" / "manifest.parquet").to_pylist()
    duplicates = [row for row in manifest2 if row["status"] == "duplicate"]
    assert duplicates and all("drop1" in row["reason"] for row in duplicates)
    folded = column_values(f"{results}/{PREDICTIONS}/*/*.parquet", "checksum")
    assert len(folded) == len(set(folded)), "a sequence was folded twice"


def test_index_covers_both_drops(incremental_run):
    results = incremental_run["results"]
    index = pq.read_table(results / "atlas" / "index.parquet").to_pylist()
    assert {row["drop"] for row in index} == {"drop1", "drop2"}
    novelty = duckdb.sql(f"SELECT checksum, novel FROM read_parquet('{results}/novelty/*/*.parquet')")
    novel_checksums = {checksum for checksum, novel in novelty.fetchall() if novel}
    assert {row["checksum"] for row in index} == novel_checksums
    con = duckdb.connect(str(results / "atlas" / "atlas.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM atlas").fetchone()[0] == len(index)
    records = con.execute("SELECT count(*) FROM manifest").fetchone()[0]
    headers = sum(line.startswith(">") for path in (DROP1, DROP2) for line in xopen(path))
    assert records == headers


def test_rerun_with_nothing_new_schedules_no_work(incremental_run):
    jobs = incremental_run["dry_run_nothing_new"]
    work = {"split_drop", "fold_chunk", "novelty_search", "novelty_chunk"}
    assert not [name for name, _ in jobs if name in work], jobs


def test_raised_confidence_threshold_searches_again_and_folds_nothing(incremental_run, tmp_path):
    """novelty.queries confident (the default) searches only the confident predictions: raising min_plddt
    re-searches every chunk (its settings changed) and folds nothing again; the novelty rows are then the
    confident predictions' only, the atlas their novel ones, and `atlas stats` says what "novel" counts.
    `queries: all` then searches every sequence, and the atlas holds the same rows."""
    workdir = tmp_path / "copy"
    shutil.copytree(incremental_run["workdir"], workdir)
    results = workdir / "results"
    predictions = pq.read_table(results / PREDICTIONS, columns=["checksum", "mean_plddt"]).to_pylist()
    plddts = sorted(row["mean_plddt"] for row in predictions)
    middle = len(plddts) // 2
    threshold = round((plddts[middle - 1] + plddts[middle]) / 2, 4)  # half fall below, none near it
    confident = {row["checksum"] for row in predictions if row["mean_plddt"] >= threshold}
    assert 0 < len(confident) < len(predictions)
    drops = [DROP1, DROP2]
    planned = {
        name for name, _ in planned_jobs(run_snakemake(workdir, drops, "--dry-run", min_plddt=threshold))
    }
    assert {"novelty_search", "novelty_chunk"} <= planned and not planned & {"split_drop", "fold_chunk"}
    folded_before = file_digests(results / PREDICTIONS)
    run_snakemake(workdir, drops, min_plddt=threshold)
    assert file_digests(results / PREDICTIONS) == folded_before
    novelty = pq.read_table(results / "novelty").to_pylist()
    assert sorted(row["checksum"] for row in novelty) == sorted(confident)
    index = pq.read_table(results / "atlas" / "index.parquet").to_pylist()
    assert {row["checksum"] for row in index} == {row["checksum"] for row in novelty if row["novel"]}
    stats = subprocess.run(
        [sys.executable, "-m", "atlas", "stats", "--outdir", str(results)], capture_output=True, text=True
    )
    assert stats.returncode == 0, stats.stderr
    assert "novelty computed for the high-confidence predictions only" in stats.stdout
    novel_row = next(line for line in stats.stdout.splitlines() if line.startswith("novel ("))
    assert novel_row.startswith("novel (only high confidence is searched)")
    assert novel_row.split()[-1] == str(len(index))

    every = {"reference": str(REFERENCE), "threads": 1, "queries": "all"}
    run_snakemake(workdir, drops, min_plddt=threshold, novelty=every)
    assert file_digests(results / PREDICTIONS) == folded_before
    searched = pq.read_table(results / "novelty").to_pylist()
    assert sorted(row["checksum"] for row in searched) == sorted(row["checksum"] for row in predictions)
    assert pq.read_table(results / "atlas" / "index.parquet").to_pylist() == index
    stats = subprocess.run(
        [sys.executable, "-m", "atlas", "stats", "--outdir", str(results)], capture_output=True, text=True
    )
    assert "novelty computed for every sequence" in stats.stdout
    novel_row = next(line for line in stats.stdout.splitlines() if line.startswith("novel ("))
    assert novel_row.startswith("novel (any confidence)")
    assert int(novel_row.split()[-1]) >= len(index)
