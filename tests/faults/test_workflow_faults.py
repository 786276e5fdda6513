"""Workflow-level faults (issue 10): config changes, hostile names, missing chunks, touched drops, two runs on
one outdir, bad config, kills, a full disk, CRLF and empty drops. Real Snakemake runs with the `tiny` model on
CPU on a few real MGnify proteins (tests/data), so each run takes seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def small_drop(test_data: Path, count: int, skip: int = 0) -> str:
    """`count` MGnify proteins of 40-120 residues as FASTA text (tests/data/mgnifam_all_seqs_concat.fa)."""
    records, header = [], None
    for line in (test_data / "mgnifam_all_seqs_concat.fa").read_text().splitlines():
        if line.startswith(">"):
            header = line
        elif header and 40 <= len(line) <= 120:
            records.append(f"{header}\n{line}\n")
            header = None
    return "".join(records[skip : skip + count])


def write_config(workdir: Path, drops: list, **overrides) -> Path:
    config = {
        "drops": drops,
        "outdir": "results",
        "model": "tiny",
        "device": "cpu",
        "chunk_residues": 150,
        "max_tokens_per_batch": 1024,
        "fold_threads": 1,
        "num_recycles": 0,
        "min_plddt": 0,
        "min_ptm": 0,
        **overrides,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return path


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [*SNAKEMAKE, "--configfile", str(workdir / "config.yaml"), "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{(result.stdout + result.stderr)[-5000:]}")
    return result


def output_of(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def file_digests(folder: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file under `folder`: a rewrite or a deletion changes it."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def queued_checksums(results: Path, drop: str) -> set[str]:
    manifest = pq.read_table(results / "chunks" / drop / "manifest.parquet").to_pylist()
    return {row["checksum"] for row in manifest if row["status"] == "queued"}


def predicted_checksums(folder: Path) -> set[str]:
    return {row["checksum"] for path in folder.rglob("*.parquet") for row in pq.read_table(path).to_pylist()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, test_data):
    """A finished run (index and report included) of one small drop; tests copy it before changing it."""
    workdir = tmp_path_factory.mktemp("finished")
    (workdir / "drop.fasta").write_text(small_drop(test_data, 4))
    write_config(workdir, ["drop.fasta"])
    snakemake(workdir)
    return workdir


def copy_run(finished: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", f"{finished}/.", str(target)], check=True)
    return target


@pytest.mark.slow
def test_misspelt_model_is_refused_and_another_model_keeps_the_first_ones_predictions(
    finished_run, tmp_path, fault_case
):
    case = fault_case(
        "#1 model changed to a misspelt hub id, then to another model",
        expected="refused at start naming the model; every prediction kept",
    )
    workdir = copy_run(finished_run, tmp_path)
    predictions = workdir / "results" / "predictions"
    before = file_digests(predictions)
    write_config(workdir, ["drop.fasta"], model="facebok/esmfold_v1")
    refused = snakemake(workdir, check=False)
    assert refused.returncode != 0
    assert "facebok/esmfold_v1" in output_of(refused) and "nothing was started" in output_of(refused)
    assert file_digests(predictions) == before

    write_config(workdir, ["drop.fasta"], num_recycles=1)  # another model setting: a second prediction set
    snakemake(workdir)
    after = file_digests(predictions)
    assert {name: after[name] for name in before} == before, "the first model's predictions changed"
    assert {name.split("/")[0] for name in after} == {"tiny-r0", "tiny-r1"}
    queued = queued_checksums(workdir / "results", "drop")
    assert predicted_checksums(predictions / "tiny-r1") == queued
    case.observed = f"refused ({refused.returncode}); {len(before)} files kept; tiny-r1 added beside tiny-r0"


@pytest.mark.slow
def test_settings_that_do_not_change_results_rerun_nothing(finished_run, tmp_path, fault_case):
    case = fault_case(
        "threads, batch budget, device, trunk chunking changed",
        expected="nothing reruns",
    )
    workdir = copy_run(finished_run, tmp_path)
    write_config(
        workdir,
        ["drop.fasta"],
        fold_threads=2,
        max_tokens_per_batch=512,
        max_pair_cells_per_batch=4096,
        device="auto",
        trunk_chunk_size=8,
        lm_precision="fp32",
    )
    dry = output_of(snakemake(workdir, "--dry-run"))
    assert "Nothing to be done" in dry, dry[-3000:]
    case.observed = "nothing to be done"


HOSTILE_NAMES = [
    "my drop.fasta",
    "-dash.fasta",
    "x$(touch PWNED)y.fasta",
    'it\'s "quoted".fasta',
    "back`touch PWNED2`tick.fasta",
    "ünïcödé-α.fasta",
]


@pytest.mark.slow
def test_hostile_drop_file_names_are_data(tmp_path, test_data, fault_case):
    case = fault_case(
        "#2 drops named with spaces, -dash, $(), quotes, backticks, non-ASCII",
        expected="each folded under its own name; no command runs",
    )
    for position, name in enumerate(HOSTILE_NAMES):
        (tmp_path / name).write_text(small_drop(test_data, 1, skip=position))
    write_config(tmp_path, HOSTILE_NAMES)
    snakemake(tmp_path, "folded")
    results = tmp_path / "results"
    for name in HOSTILE_NAMES:
        drop = name[: -len(".fasta")]
        queued = queued_checksums(results, drop)
        assert queued and predicted_checksums(results / "predictions" / "tiny-r0" / drop) == queued, name
    assert not list(tmp_path.rglob("PWNED*")) and not list(ROOT.glob("PWNED*"))
    case.observed = f"{len(HOSTILE_NAMES)} drops folded; no PWNED file"


@pytest.mark.slow
def test_hostile_paths_of_named_drops_run_to_the_report(tmp_path, test_data, fault_case):
    case = fault_case(
        "named drops whose files share a base name and have hostile folders",
        expected="both drops in the index",
    )
    paths = ["2024_01 $(touch PWNED)/proteins.faa", "-2024_02/proteins.faa"]
    for position, path in enumerate(paths):
        (tmp_path / path).parent.mkdir()
        (tmp_path / path).write_text(small_drop(test_data, 2, skip=2 * position))
    write_config(tmp_path, [{"name": "jan", "path": paths[0]}, {"name": "feb", "path": paths[1]}])
    snakemake(tmp_path)
    index = pq.read_table(tmp_path / "results" / "atlas" / "index.parquet").to_pylist()
    assert {row["drop"] for row in index} == {"jan", "feb"}
    assert not list(tmp_path.rglob("PWNED*"))
    case.observed = f"index rows of drops {sorted({row['drop'] for row in index})}"


@pytest.mark.slow
def test_deleted_chunk_file_is_reported_not_skipped(tmp_path, test_data, fault_case):
    case = fault_case(
        "#4 one chunk FASTA deleted after the split, workflow rerun",
        expected="stops naming the chunk file; nothing silently missing",
    )
    (tmp_path / "drop.fasta").write_text(small_drop(test_data, 4))
    write_config(tmp_path, ["drop.fasta"])
    snakemake(tmp_path, "results/chunks/drop/manifest.parquet")
    chunks = sorted((tmp_path / "results" / "chunks" / "drop").glob("*.fasta"))
    assert len(chunks) >= 2
    chunks[0].unlink()
    result = snakemake(tmp_path, check=False)
    assert result.returncode != 0
    assert chunks[0].name in output_of(result) and "manifest" in output_of(result)
    assert not (tmp_path / "results" / "atlas" / "index.parquet").exists()
    case.observed = f"stopped: {chunks[0].name} named"


@pytest.mark.slow
def test_touched_drop_and_rewritten_chunks_fold_nothing_again(tmp_path, test_data, fault_case):
    case = fault_case(
        "#5 touch on the drop and every chunk file (no checksum shortcut)",
        expected="no fold job",
    )
    (tmp_path / "drop.fasta").write_text(small_drop(test_data, 4))
    write_config(tmp_path, ["drop.fasta"])
    # Without recorded metadata Snakemake decides by time stamps alone, as it does for every file over 1 MB
    # (real chunks): the case where a rewritten chunk used to refold.
    snakemake(tmp_path, "folded", "--drop-metadata")
    predictions = tmp_path / "results" / "predictions"
    before = file_digests(predictions)
    time.sleep(0.05)
    for path in [tmp_path / "drop.fasta", *(tmp_path / "results" / "chunks").rglob("*.fasta")]:
        path.touch()
    dry = output_of(snakemake(tmp_path, "folded", "--dry-run"))
    assert "fold_chunk" not in dry, dry[-3000:]
    snakemake(tmp_path, "folded")
    assert file_digests(predictions) == before
    case.observed = "no fold job; predictions untouched"


def _wait_for(predicate, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


@pytest.mark.slow
def test_second_run_on_the_same_outdir_stops_naming_the_first(tmp_path, test_data, fault_case):
    case = fault_case(
        "#6 two checkouts/working directories run on the same outdir",
        expected="the second stops at once naming host, pid, start; dry runs need no lock",
    )
    first, second = tmp_path / "first", tmp_path / "second"
    outdir = tmp_path / "shared-results"
    for workdir in (first, second):
        workdir.mkdir()
        (workdir / "drop.fasta").write_text(small_drop(test_data, 16))
        write_config(workdir, ["drop.fasta"], outdir=str(outdir))
    command = [*SNAKEMAKE, "--configfile", str(first / "config.yaml"), "--cores", "1"]
    running = subprocess.Popen(
        command, cwd=first, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        lock = outdir / ".atlas.lock"
        _wait_for(lambda: lock.exists() and str(running.pid) in lock.read_text())
        started = time.monotonic()
        refused = snakemake(second, check=False)
        elapsed = time.monotonic() - started
        message = output_of(refused)
        assert refused.returncode != 0 and f"pid {running.pid}" in message and "started" in message
        assert os.uname().nodename in message
        dry = snakemake(second, "--dry-run")
        assert "in use by another atlas run" not in output_of(dry)
        assert running.poll() is None, "the first run ended before it could be killed"
    finally:
        os.killpg(running.pid, signal.SIGKILL)  # the run and its jobs: a crash
        running.wait()
    # the first run was killed holding the lock: the next run takes over (no --unlock) and says so
    rerun = snakemake(second)
    assert "ended without releasing" in output_of(rerun) and f"'pid': {running.pid}" in output_of(rerun)
    assert predicted_checksums(outdir / "predictions") == queued_checksums(outdir, "drop")
    case.observed = f"refused in {elapsed:.0f} s naming pid {running.pid}; after kill -9 a new run took over"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"outdir": ""}, "outdir"),
        ({"outdir": "."}, "outdir"),
        ({"outdir": str(ROOT / "atlas")}, "outdir"),
        ({"outdir": str(ROOT)}, "outdir"),
        ({"min_length": 500, "max_length": 100}, "min_length"),
        ({"chunk_residue": 10}, "chunk_residue"),
        ({"drops": ["missing.fasta"]}, "missing.fasta"),
    ],
    ids=[
        "empty-outdir",
        "dot-outdir-in-source",
        "outdir-atlas-package",
        "outdir-source-root",
        "min-gt-max",
        "unknown-key",
        "missing-drop",
    ],
)
def test_bad_config_is_refused_at_start_naming_the_key(tmp_path, test_data, fault_case, overrides, key):
    case = fault_case(f"#10/#11 config {overrides}", expected=f"refused at start naming {key!r}")
    (tmp_path / "drop.fasta").write_text(small_drop(test_data, 2))
    write_config(tmp_path, **{"drops": ["drop.fasta"], **overrides})
    workdir = ROOT if overrides.get("outdir") == "." else tmp_path  # `.` run from the checkout
    before = set(ROOT.iterdir())
    result = subprocess.run(
        [*SNAKEMAKE, "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", "--dry-run"],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert key in output_of(result), output_of(result)[-2000:]
    assert set(ROOT.iterdir()) <= before | {ROOT / ".snakemake"}
    assert not (tmp_path / "results").exists()
    case.observed = "refused: " + next(line for line in output_of(result).splitlines() if key in line).strip()


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["split_drop", "fold_chunk"])
def test_kill_9_then_rerun_loses_nothing(tmp_path, test_data, fault_case, stage):
    case = fault_case(
        f"kill -9 of snakemake and its jobs during {stage}, then rerun (no --unlock)",
        expected="rerun completes; every queued sequence predicted",
    )
    (tmp_path / "drop.fasta").write_text(small_drop(test_data, 6))
    write_config(tmp_path, ["drop.fasta"])
    command = [*SNAKEMAKE, "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", "folded"]
    running = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    log_dir = tmp_path / "results" / "logs" / ("split" if stage == "split_drop" else "fold")
    _wait_for(lambda: log_dir.exists() and any(log_dir.rglob("*.log")) or running.poll() is not None)
    os.killpg(running.pid, signal.SIGKILL)
    running.wait()
    snakemake(tmp_path, "folded")
    results = tmp_path / "results"
    assert predicted_checksums(results / "predictions") == queued_checksums(results, "drop")
    case.observed = "rerun completed; all queued sequences predicted"


@pytest.mark.slow
def test_full_disk_stops_cleanly_and_a_rerun_with_space_finishes(tmp_path, test_data, fault_case):
    case = fault_case("outdir on a full file system (tmpfs)", expected="a job fails; a rerun finishes")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    outdir = tmp_path / "small"
    outdir.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(outdir)])
    if mounted.returncode != 0:
        pytest.skip("could not mount a tmpfs here")
    try:
        (tmp_path / "drop.fasta").write_text(small_drop(test_data, 6))
        write_config(tmp_path, ["drop.fasta"], outdir=str(outdir))
        filler = outdir / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1k", "count=1000"], capture_output=True)
        failed = snakemake(tmp_path, "folded", check=False)
        assert failed.returncode != 0
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(outdir)], check=True)
        snakemake(tmp_path, "folded")
        assert predicted_checksums(outdir / "predictions") == queued_checksums(outdir, "drop")
    finally:
        subprocess.run(["umount", "-l", str(outdir)])
    case.observed = f"failed (exit {failed.returncode}); after freeing space the rerun finished"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["crlf", "empty"])
def test_crlf_and_empty_drops_end_cleanly(tmp_path, test_data, fault_case, kind):
    case = fault_case(f"a {kind} drop file", expected="the run ends cleanly")
    text = small_drop(test_data, 2).replace("\n", "\r\n") if kind == "crlf" else ""
    (tmp_path / "drop.fasta").write_bytes(text.encode())
    write_config(tmp_path, ["drop.fasta"])
    snakemake(tmp_path, "folded")
    results = tmp_path / "results"
    assert predicted_checksums(results / "predictions") == queued_checksums(results, "drop")
    assert bool(queued_checksums(results, "drop")) == (kind == "crlf")
    case.observed = f"ended cleanly; {len(queued_checksums(results, 'drop'))} queued, all predicted"
