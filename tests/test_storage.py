"""The whole workflow with S3 as default storage: moto's S3 server on 127.0.0.1, snakemake-storage-plugin-s3.

Every input and output lives in the bucket: the splits (drop 2's fetches drop 1's manifest) with their chunk
FASTAs as slot files, the fold jobs (tiny model on CPU), the novelty search against a packed reference, the
structural novelty against the tests' structures (given as one tar, built into one tar), the clusters, the
index and the report. A second run reruns nothing, and the report, read back from the
bucket, still accounts for every record and the index for every novel prediction. The same holds remote-style
(`--shared-fs-usage none`, jobs submitted through the cluster-generic executor as separate Snakemake
processes, as workflow/profiles/kubernetes runs them).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")
pytest.importorskip("snakemake_storage_plugin_s3")

pytestmark = [pytest.mark.slow, pytest.mark.storage]

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "atlas"
DROPS = ("drop1.fasta", "drop2.fasta.gz")
INPUTS = (*DROPS, "reference.fasta")
STRUCTURES = ROOT / "tests" / "data" / "structures"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """A moto S3 server with a bucket holding the example drops under `run/`; yields its endpoint URL."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=BUCKET)
            break
        except Exception:  # noqa: BLE001  (the server is still starting)
            if time.monotonic() > deadline:
                server.kill()
                raise
            time.sleep(0.2)
    for name in INPUTS:
        client.upload_file(str(ROOT / "example" / name), BUCKET, f"run/{name}")
    # the structure reference as remote storage takes it: one tar of the folder of structures
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as archive:
        for path in sorted(STRUCTURES.iterdir()):
            archive.add(path, arcname=path.name)
    client.put_object(Bucket=BUCKET, Key="run/structures.tar", Body=packed.getvalue())
    yield endpoint, client
    server.kill()
    server.wait()


def run_snakemake(workdir: Path, endpoint: str, *args: str) -> str:
    config = {
        "drops": list(DROPS),
        "outdir": "results",
        "model": "tiny",
        "device": "cpu",
        # two length buckets, a chunk each: few jobs (each remote job is a Snakemake process of its own)
        "length_buckets": [256, 1280],
        "chunk_residues": 1_000_000,
        "max_chunks_per_drop": 4,
        "max_tokens_per_batch": 1024,
        "fold_threads": 1,
        "num_recycles": 0,
        # the tiny model's confidences are random: keep every prediction so the index is not empty
        "min_plddt": 0,
        "min_ptm": 0,
        "novelty": {"reference": "reference.fasta", "threads": 1},
        "structural_novelty": {"reference": "structures.tar", "threads": 1},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", "config.yaml", "--cores", "2", "--default-storage-provider", "s3"]
    command += ["--default-storage-prefix", f"s3://{BUCKET}/run", "--storage-s3-endpoint-url", endpoint]
    command += args
    # job scripts start `python -m snakemake`: this interpreter's
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "\n".join(
            f"== {log}\n{log.read_text()[-2000:]}" for log in workdir.rglob("*.log") if log.is_file()
        )
        raise AssertionError(f"snakemake failed:\n{output[-6000:]}\n{logs[-8000:]}")
    return output


def stored_keys(client) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="run/results/")
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def stored(client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def fasta_records(name: str) -> int:
    data = (ROOT / "example" / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return sum(line.startswith(b">") for line in data.splitlines())


def check_atlas_in_bucket(client) -> None:
    """Every stage's files are in the bucket and account for every record of the drops."""
    keys = stored_keys(client)
    chunks = set()
    for drop in ("drop1", "drop2"):
        manifest = pq.read_table(io.BytesIO(stored(client, f"run/results/chunks/{drop}/manifest.parquet")))
        chunks |= {(drop, chunk) for chunk in manifest.column("chunk").drop_null().to_pylist()}
        # every slot the split declared, filled in chunk name order, the others empty
        slots = [stored(client, f"run/results/chunks/{drop}/slots/{index:05d}.fasta") for index in range(4)]
        drop_chunks = sorted(chunk for name, chunk in chunks if name == drop)
        assert all(slots[: len(drop_chunks)]) and not any(slots[len(drop_chunks) :])
    predictions = {key for key in keys if key.startswith("run/results/predictions/")}
    assert predictions == {
        f"run/results/predictions/tiny-r0/{drop}/{chunk}.parquet" for drop, chunk in chunks
    }
    novelty = {key for key in keys if key.startswith("run/results/novelty/") and "/.jobs/" not in key}
    assert novelty == {f"run/results/novelty/{drop}/{chunk}.parquet" for drop, chunk in chunks}
    assert not [key for key in keys if "/.jobs/" in key], "temporary novelty job files were left behind"
    structural = {key for key in keys if key.startswith("run/results/structural/")}
    assert structural == {f"run/results/structural/{drop}/{chunk}.parquet" for drop, chunk in chunks}
    assert "run/results/structure_reference/reference.tar" in keys
    for name in ("atlas/staged/index.parquet", "atlas/staged/atlas.duckdb", "report/index.html"):
        assert f"run/results/{name}" in keys
    assert {"run/results/clusters/clusters.parquet", "run/results/clusters/drop2/state.tar"} <= keys

    counts = json.loads(stored(client, "run/results/report/summary.json"))["counts"]
    total = counts["total"]
    assert counts["invariant"] and total["pending"] == 0
    assert total["records"] == sum(fasta_records(name) for name in DROPS)
    assert total["records"] == total["folded"] + total["failed"] + total["duplicates"] + total["rejected"]
    prediction_rows = sum(pq.read_metadata(io.BytesIO(stored(client, key))).num_rows for key in predictions)
    assert prediction_rows == total["folded"] + total["failed"] == total["queued"]
    # the index holds every novel prediction (thresholds 0): counted from the bucket's novelty files
    novel = set()
    for key in novelty:
        table = pq.read_table(io.BytesIO(stored(client, key)), columns=["checksum", "novel"]).to_pylist()
        novel |= {row["checksum"] for row in table if row["novel"]}
    index = pq.read_table(io.BytesIO(stored(client, "run/results/atlas/staged/index.parquet")))
    assert set(index.column("checksum").to_pylist()) == novel and index.num_rows == len(novel) > 0
    # structural novelty ran against the packed reference: every index row says so and has its verdict
    assert all(index.column("structural_computed").to_pylist())
    assert None not in index.column("structurally_novel").to_pylist()


def test_the_workflow_runs_on_s3_and_a_second_run_reruns_nothing(tmp_path, s3):
    endpoint, client = s3
    run_snakemake(tmp_path, endpoint)
    check_atlas_in_bucket(client)
    second = run_snakemake(tmp_path, endpoint)
    assert "Nothing to be done" in second, second[-3000:]
    check_atlas_in_bucket(client)


# A local stand-in for a batch system: the job id is the job script's path, its exit status lands beside it.
# Each job gets local storage of its own (as a pod would): a file one job reads that is not a declared
# input, retrieved from the bucket, is not there.
SUBMIT = (
    'mkdir -p job-logs; job="${1##*/}";'
    ' sed -i "s|--local-storage-prefix [^ ]*|--local-storage-prefix pods/$job|" "$1";'
    ' grep -q "local-storage-prefix pods/" "$1" || exit 1;'
    ' nohup bash -c \'bash "$0" > "job-logs/${0##*/}.log" 2>&1; echo $? > "$0.rc"\' "$1" > /dev/null 2>&1 &'
    ' echo "$1"\n'
)
STATUS = '[ -f "$1.rc" ] || { echo running; exit; }; [ "$(cat "$1.rc")" = 0 ] && echo success || echo failed'


def test_the_workflow_runs_remote_style_without_a_shared_filesystem(tmp_path, s3):
    endpoint, client = s3
    (tmp_path / "submit.sh").write_text(SUBMIT)
    (tmp_path / "status.sh").write_text(STATUS)
    # every job is a separate Snakemake process started by the submit command, sharing nothing but the bucket
    remote = [
        "--executor",
        "cluster-generic",
        "--cluster-generic-submit-cmd",
        f"bash {tmp_path / 'submit.sh'}",
        "--cluster-generic-status-cmd",
        f"bash {tmp_path / 'status.sh'}",
        "--shared-fs-usage",
        "none",
        "--jobs",
        "4",
    ]
    run_snakemake(tmp_path, endpoint, *remote)
    check_atlas_in_bucket(client)
    assert "Nothing to be done" in run_snakemake(tmp_path, endpoint, *remote)
    check_atlas_in_bucket(client)
