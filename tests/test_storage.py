"""The workflow with S3 as default storage: moto's S3 server on 127.0.0.1, snakemake-storage-plugin-s3.

What is covered: the split checkpoints run with every input and output in the bucket (drop 2's split fetches
drop 1's manifest from it), a second run reruns nothing, and the same holds remote-style (`--shared-fs-usage
none`, jobs submitted through the cluster-generic executor as separate Snakemake processes). The chunk FASTAs
are not yet declared outputs of the split (README, "Running on Kubernetes"), so fold jobs are not run here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")
pytest.importorskip("snakemake_storage_plugin_s3")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "atlas"
INPUTS = ("drop1.fasta", "drop2.fasta.gz", "reference.fasta")
TARGETS = ("results/chunks/drop1/manifest.parquet", "results/chunks/drop2/manifest.parquet")


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
    yield endpoint, client
    server.kill()
    server.wait()


def run_snakemake(workdir: Path, endpoint: str, *args: str) -> str:
    config = {
        "drops": ["drop1.fasta", "drop2.fasta.gz"],
        "outdir": "results",
        "model": "tiny",
        "device": "cpu",
        "chunk_residues": 2000,
        "novelty": {"reference": "reference.fasta", "threads": 1},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # the targets first: the plugin's options take several values
    command = [sys.executable, "-m", "snakemake", *TARGETS, "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", "config.yaml", "--cores", "2", "--default-storage-provider", "s3"]
    command += ["--default-storage-prefix", f"s3://{BUCKET}/run", "--storage-s3-endpoint-url", endpoint]
    command += args
    # job scripts start `python -m snakemake`: this interpreter's
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def stored_keys(client) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=BUCKET, Prefix="run/results/")["Contents"]}


def test_splits_run_on_s3_and_a_second_run_reruns_nothing(tmp_path, s3):
    endpoint, client = s3
    run_snakemake(tmp_path, endpoint)
    assert {"run/results/chunks/drop1/manifest.parquet", "run/results/chunks/drop2/manifest.parquet"} <= (
        stored_keys(client)
    )
    second = run_snakemake(tmp_path, endpoint)
    assert "Nothing to be done" in second, second[-3000:]


# A local stand-in for a batch system: the job id is the job script's path, its exit status lands beside it.
SUBMIT = (
    'mkdir -p job-logs; nohup bash -c \'bash "$0" > "job-logs/${0##*/}.log" 2>&1; echo $? > "$0.rc"\' "$1"'
    ' > /dev/null 2>&1 & echo "$1"\n'
)
STATUS = '[ -f "$1.rc" ] || { echo running; exit; }; [ "$(cat "$1.rc")" = 0 ] && echo success || echo failed'


def test_splits_run_remote_style_without_a_shared_filesystem(tmp_path, s3):
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
        "2",
    ]
    run_snakemake(tmp_path, endpoint, *remote)
    assert {"run/results/chunks/drop1/manifest.parquet", "run/results/chunks/drop2/manifest.parquet"} <= (
        stored_keys(client)
    )
    assert "Nothing to be done" in run_snakemake(tmp_path, endpoint, *remote)
