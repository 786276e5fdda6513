"""The same DAG through a real SLURM: a one-node cluster on loopback (tests/slurm/localslurm.py).

Runs when CI or ATLAS_SLURM_TEST is set (`make test` under CI, `make test-slurm` by hand), else skips. It
apt-installs Debian's slurm-wlm and munge when they are missing (skips when it cannot: not root, no apt, the
install fails), starts munged, slurmctld and slurmd, and stops them (by pid) at the end.

The demo (example/demo.yaml: both drops, the tiny model, novelty against the bundled reference) runs locally
and, alongside, through `--workflow-profile workflow/profiles/slurm` with `device: cuda`: every fold job asks
SLURM for a GPU (and no other job does), fails fast since the node's GPU is a name only, is retried once with
twice the memory and time, and is reported with its rule log and SLURM log; the other jobs complete. A rerun
on `cpu` then submits only the fold jobs (no GPU asked) and the index, and every Parquet row of the SLURM
results must equal the local run's. To stay within CI time the runs keep the demo's DAG but fold fewer
sequences (`max_length: 64`, no recycles; the longer records are `rejected` rows of the manifests, which are
compared too); ATLAS_SLURM_FULL_DEMO=1 runs the demo's own sizes.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "slurm"))
import localslurm  # noqa: E402

from atlas.config import schema_defaults  # noqa: E402

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
# Rules that must run as SLURM jobs (`all` and `report` are local rules).
REMOTE_RULES = {"split_drop", "fold_chunk", "reference_db", "novelty_search", "atlas_index"}
# Columns that may differ between two correct runs (none of the current schemas has one).
VOLATILE_COLUMN = re.compile(r"(time|elapsed|seconds|duration|date|host|_at$|_at_utc$)", re.IGNORECASE)
# Fast status checks for a short test (the plugin's default waits 40 s before the first check). Without
# slurmdbd `sacct` cannot answer, so status comes from squeue (the cluster's MinJobAge covers it).
SLURM_TEST_ARGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2")
SNAKEMAKE_TIMEOUT = 600


def _enabled() -> bool:
    flags = (os.environ.get("CI", ""), os.environ.get("ATLAS_SLURM_TEST", ""))
    return any(flag.strip().lower() not in ("", "0", "false", "no") for flag in flags)


def demo_config() -> dict:
    config = yaml.safe_load((ROOT / "example" / "demo.yaml").read_text())
    config["drops"] = [str(ROOT / drop) for drop in config["drops"]]
    config["novelty"]["reference"] = str(ROOT / config["novelty"]["reference"])
    # structural novelty has its own workflow test (tests/test_structural.py); here it would only add jobs
    config["structural_novelty"] = {"reference": ""}
    config["outdir"] = "results"
    # Same device and threads in both runs, so the tiny model's numbers are bit-identical; every prediction
    # passes the confidence filter (the tiny model's are random), so the index has rows to compare.
    config.update(device="cpu", fold_threads=2, min_plddt=0, min_ptm=0)
    if not os.environ.get("ATLAS_SLURM_FULL_DEMO"):
        config.update(max_length=64, num_recycles=0)
    # The large-chunk path of MGnify-sized drops: chunk_residues far below a drop's residues, so the split
    # raises the chunk size to keep each drop within max_chunks_per_drop fold jobs (atlas.chunking.chunk_size)
    buckets = config.get("length_buckets", schema_defaults()["length_buckets"])
    config.update(chunk_residues=20, max_chunks_per_drop=len(buckets) + 1)
    return config


def make_workdir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump(demo_config()))
    return path


def parquet_rows(outdir: Path) -> dict[str, list[str]]:
    """Every Parquet file under outdir: its rows (volatile columns left out), canonically sorted."""
    tables = {}
    for path in sorted(outdir.rglob("*.parquet")):
        rows = pq.read_table(path).to_pylist()
        rows = [{k: v for k, v in row.items() if not VOLATILE_COLUMN.search(k)} for row in rows]
        key = str(path.relative_to(outdir))
        tables[key] = sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)
    return tables


def jobs_of_rule(jobs: list[dict[str, str]], rule: str) -> list[dict[str, str]]:
    """SLURM jobs the executor submitted for a rule (it puts `rule_<name>[_wildcards_...]` in --comment)."""
    return [job for job in jobs if re.fullmatch(rf"rule_{rule}(_wildcards_.*)?", job.get("Comment", ""))]


def gpu_request(job: dict[str, str]) -> str:
    return " ".join(job.get(key) or "" for key in ("TresPerJob", "TresPerNode", "TresPerTask", "Gres"))


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not _enabled():
        pytest.skip("SLURM cluster test: runs under CI or with ATLAS_SLURM_TEST=1 (make test-slurm)")
    if os.geteuid() != 0:
        pytest.skip("SLURM cluster test: needs root (slurmd runs jobs as their users)")
    if Path("/etc/slurm/slurm.conf").exists():
        pytest.skip("SLURM cluster test: this host has a SLURM of its own (/etc/slurm/slurm.conf)")
    started = time.monotonic()
    reason = localslurm.ensure_installed()
    if reason:
        pytest.skip(f"SLURM cluster test: cannot install slurm-wlm/munge: {reason}")
    installed = time.monotonic()
    instance = localslurm.LocalSlurm(tmp_path_factory.mktemp("slurm"))
    atexit.register(instance.stop)  # in case the session dies before the fixture's teardown
    instance.start()
    print(f"slurm: install {installed - started:.1f}s, start {time.monotonic() - installed:.1f}s")
    yield instance
    instance.stop()


class Run:
    """One Snakemake invocation, started in the background."""

    def __init__(self, workdir: Path, *args: str, env: dict[str, str]):
        self.workdir = workdir
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]
        self.transcript = workdir / f"snakemake-{time.monotonic_ns()}.out"
        self.started = time.monotonic()
        with self.transcript.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def wait(self) -> Run:
        try:
            self.process.wait(timeout=max(1, SNAKEMAKE_TIMEOUT - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.process.terminate()  # Snakemake cancels its SLURM jobs on SIGTERM
            self.process.wait(timeout=60)
        self.elapsed = time.monotonic() - self.started
        self.returncode = self.process.returncode
        self.output = self.transcript.read_text(errors="replace")
        return self

    def failure(self) -> str:
        logs = "\n".join(
            f"== {path}\n{path.read_text(errors='replace')[-2000:]}"
            for path in sorted(self.workdir.rglob("*.log"))
            if "logs" in path.parts or "slurm_logs" in path.parts
        )
        return f"snakemake exited {self.returncode}:\n{self.output[-6000:]}\n{logs}"


def slurm_args(*extra: str) -> list[str]:
    return ["--workflow-profile", str(PROFILE), *SLURM_TEST_ARGS, *extra]


@pytest.fixture(scope="module")
def local_process(cluster, tmp_path_factory):
    """The demo run locally, the reference the SLURM run must reproduce: started now, awaited later."""
    workdir = make_workdir(tmp_path_factory.mktemp("local") / "run")
    run = Run(workdir, "--cores", "2", env=dict(os.environ))
    yield run
    if run.process.poll() is None:
        run.process.terminate()
        run.process.wait(timeout=60)


@pytest.fixture(scope="module")
def local_run(local_process) -> Path:
    run = local_process.wait()
    assert run.returncode == 0, run.failure()
    print(f"local demo run: {run.elapsed:.1f}s")
    return run.workdir


@pytest.fixture(scope="module")
def jobs_before_cuda(cluster):
    return {job["JobId"] for job in cluster.jobs()}


@pytest.fixture(scope="module")
def cuda_run(cluster, local_process, jobs_before_cuda, tmp_path_factory):
    """The demo on SLURM with `device: cuda`: every fold job asks for a GPU and, the node's GPU being a name
    only, fails fast (torch sees no CUDA device); it is retried once (with more memory and time), fails
    again, and the other jobs carry on (keep-going). Runs alongside the local run."""
    workdir = make_workdir(tmp_path_factory.mktemp("slurm-run") / "run")
    run = Run(workdir, *slurm_args("--retries", "1", "--config", "device=cuda"), env=cluster.env()).wait()
    print(f"slurm demo run, device cuda: {run.elapsed:.1f}s")
    jobs = [job for job in cluster.jobs() if job["JobId"] not in jobs_before_cuda]
    folds = jobs_of_rule(jobs, "fold_chunk")
    if folds and all(job["JobState"] == "COMPLETED" for job in folds):
        pytest.skip("a CUDA GPU is visible here: the cuda fold jobs could not be made to fail")
    return run, jobs


@pytest.fixture(scope="module")
def cpu_rerun(cluster, cuda_run):
    """The same workdir rerun on cpu: only what is missing (the fold jobs, then the index) runs."""
    run, jobs = cuda_run
    before = {job["JobId"] for job in cluster.jobs()}
    rerun = Run(run.workdir, *slurm_args(), env=cluster.env()).wait()
    assert rerun.returncode == 0, rerun.failure()
    print(f"slurm demo rerun, device cpu: {rerun.elapsed:.1f}s")
    return rerun, [job for job in cluster.jobs() if job["JobId"] not in before]


# -- tests ------------------------------------------------------------------------------------------------
def test_cluster_schedules_a_gpu_job(cluster):
    """The fake node's GPU GRES works: a `--gpus=1` job is scheduled and gets a GPU (in name only)."""
    out = cluster.root / "gpu-job.out"
    wrap = "echo $CUDA_VISIBLE_DEVICES"
    jobid = cluster.submit("--gpus=1", "--mem=100", "-o", str(out), "--wrap", wrap)
    state = cluster.wait(jobid, timeout=60)
    assert state == "COMPLETED", cluster.logs()
    assert out.read_text().strip() == "0"
    (job,) = [job for job in cluster.jobs() if job["JobId"] == jobid]
    assert "gpu:1" in gpu_request(job)


def test_cuda_fold_jobs_ask_for_one_gpu_and_only_they(cuda_run):
    run, jobs = cuda_run
    rules = {re.sub(r"^rule_(\w+?)(_wildcards_.*)?$", r"\1", job.get("Comment", "")) for job in jobs}
    # every fold job fails: the index, and the novelty searches (of the confident predictions), wait for them
    first_run = REMOTE_RULES - {"atlas_index", "novelty_search"}
    assert first_run <= rules, f"rules run as SLURM jobs: {rules}\n{run.failure()}"
    assert "all" not in rules
    for job in jobs:
        if job["Comment"].startswith("rule_fold_chunk"):
            assert "gpu:1" in gpu_request(job), job
        else:
            assert "gpu" not in gpu_request(job), job


def test_failed_fold_job_is_reported_with_its_log_paths(cuda_run):
    run, jobs = cuda_run
    assert run.returncode != 0, run.output[-3000:]
    chunks = sorted((run.workdir / "results" / "chunks").rglob("*.fasta"))
    assert chunks
    for fasta in chunks:
        drop, chunk = fasta.parent.name, fasta.stem
        rule_log = f"results/logs/fold/tiny-r0/{drop}/{chunk}.log"  # the tiny model, num_recycles 0
        assert "CUDA" in (run.workdir / rule_log).read_text()
        # Snakemake's error report names the rule's log and the SLURM job's log, for every attempt.
        attempts = [job for job in jobs_of_rule(jobs, "fold_chunk") if job["Comment"].endswith(f"_{chunk}")]
        attempts = [job for job in attempts if f"_{drop}_" in job["Comment"]]
        assert len(attempts) == 2, attempts
        for job in attempts:
            assert job["JobState"] == "FAILED", job
            pattern = rf"log: {re.escape(rule_log)}, (\S*/rule_fold_chunk/\S*/{job['JobId']}\.log)"
            report = re.search(pattern, run.output)
            assert report, f"no error report naming {rule_log} and SLURM job {job['JobId']}'s log"
            assert Path(report.group(1)).exists()
    assert not list((run.workdir / "results" / "predictions").rglob("*.parquet"))


def test_failed_job_is_retried_with_more_memory_and_time(cuda_run):
    run, jobs = cuda_run
    by_chunk: dict[str, list[dict[str, str]]] = {}
    for job in jobs_of_rule(jobs, "fold_chunk"):
        by_chunk.setdefault(job["Comment"], []).append(job)
    assert by_chunk
    for attempts in by_chunk.values():
        first, second = sorted(attempts, key=lambda job: int(job["JobId"]))
        memory = [int(job["MinMemoryNode"].rstrip("M")) for job in (first, second)]
        assert memory[1] == 2 * memory[0], memory
        limits = [job["TimeLimit"] for job in (first, second)]
        assert limits == ["06:00:00", "12:00:00"], limits


def test_large_chunks_bound_the_fold_jobs_per_drop(local_run, cpu_rerun):
    """Each drop made at most max_chunks_per_drop chunks, larger than chunk_residues, and the cluster ran one
    fold job per chunk (test_rerun_resumes_on_cpu counts them)."""
    config = demo_config()
    for workdir in (local_run, cpu_rerun[0].workdir):
        manifests = sorted((workdir / "results" / "chunks").glob("*/manifest.parquet"))
        assert manifests
        for manifest in manifests:
            residues: dict[str, int] = {}
            for row in pq.read_table(manifest, columns=["status", "chunk", "length"]).to_pylist():
                if row["status"] == "queued":
                    residues[row["chunk"]] = residues.get(row["chunk"], 0) + row["length"]
            assert 0 < len(residues) <= config["max_chunks_per_drop"], (manifest, residues)
            # chunk_residues alone would have cut the drop into more chunks than it has
            assert len(residues) < sum(residues.values()) / config["chunk_residues"], (manifest, residues)
            assert max(residues.values()) > config["chunk_residues"], (manifest, residues)


def test_rerun_resumes_on_cpu(cpu_rerun, cuda_run):
    rerun, jobs = cpu_rerun
    chunks = list((rerun.workdir / "results" / "chunks").rglob("*.fasta"))
    submitted = sorted(re.sub(r"_wildcards_.*", "", job["Comment"]) for job in jobs)
    drops = list((rerun.workdir / "results" / "chunks").glob("*/manifest.parquet"))
    # split and reference jobs of the first run are not redone; report may be a local rule; the clusters and
    # the novelty search of each drop (one job: its chunks are far under novelty.job_residues) wait for its
    # predictions
    submitted = [rule for rule in submitted if rule != "rule_report"]
    expected = ["rule_atlas_index", "rule_clusters_table"]
    expected += ["rule_cluster_drop", "rule_drop_outcomes", "rule_novelty_search"] * len(drops)
    expected += ["rule_fold_chunk"] * len(chunks)
    assert submitted == sorted(expected), submitted
    for job in jobs:
        assert job["JobState"] == "COMPLETED", job
        assert "gpu" not in gpu_request(job), job


def test_slurm_rows_equal_local_rows(local_run, cpu_rerun):
    rerun, _ = cpu_rerun
    local_rows = parquet_rows(local_run / "results")
    slurm_rows = parquet_rows(rerun.workdir / "results")
    assert any(path.startswith("predictions/") for path in local_rows)
    assert "atlas/index.parquet" in local_rows and local_rows["atlas/index.parquet"], "empty index"
    assert sorted(slurm_rows) == sorted(local_rows)
    for path, rows in local_rows.items():
        assert slurm_rows[path] == rows, f"{path}: rows differ between the SLURM and the local run"
    for view in ("manifest", "predictions", "novelty", "atlas"):
        counts = []
        for workdir in (local_run, rerun.workdir):
            with duckdb.connect(str(workdir / "results" / "atlas" / "atlas.duckdb"), read_only=True) as con:
                counts.append(con.execute(f"SELECT count(*) FROM {view}").fetchone()[0])
        assert counts[0] == counts[1], f"view {view}: {counts}"


def test_profile_is_used_by_the_workflow_profile_flag(tmp_path):
    """No cluster needed: the profile parses and sets the executor and the resources the rules get."""
    workdir = make_workdir(tmp_path / "run")
    run = Run(workdir, "--workflow-profile", str(PROFILE), "--dry-run", env=dict(os.environ)).wait()
    assert run.returncode == 0, run.failure()
    assert f"Using workflow specific profile {PROFILE}" in run.output
    assert re.search(r"resources: .*mem_mb=\d+.*runtime=60", run.output), run.output[-3000:]
