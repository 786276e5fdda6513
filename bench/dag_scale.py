"""Snakemake's own cost for a large DAG: dry-run time of this workflow with N chunks beside bare Snakemake.

    .venv/bin/python bench/dag_scale.py --chunks 10000

Lays out, in a temporary folder, a finished split of one drop into N chunks (a manifest naming them and the
chunk FASTAs, each one short record) and times `snakemake --dry-run` of this workflow (N fold jobs, then index
and report) beside a bare Snakefile of the same shape (a checkpoint writing a list of N names, one job per
name, one job over all of them), each run --repeats times; prints both and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parents[1]

BARE_SNAKEFILE = """
checkpoint plan:
    input: "drop.fasta"
    output: "plan.txt"
    shell: "exit 1"


def items(wildcards):
    names = Path(checkpoints.plan.get().output[0]).read_text().split()
    return [f"out/{name}.done" for name in names]


rule all:
    input: items
    output: "all.done"
    shell: "touch {output}"


rule work:
    input: "in/{name}.txt"
    output: "out/{name}.done"
    shell: "touch {output}"
"""


def lay_out_atlas(directory: Path, chunks: int) -> Path:
    """A finished split of one drop into `chunks` chunks; returns the config file."""
    from atlas.fasta import sequence_checksum
    from atlas.tables import MANIFEST

    drop = directory / "drop.fasta"
    drop.write_text(">p0\nMKV\n")
    chunk_dir = directory / "out" / "chunks" / "drop"
    chunk_dir.mkdir(parents=True)
    rows = {name: [] for name in MANIFEST.names}
    for number in range(chunks):
        sequence = (
            "M"
            + "ACDEFGHIKLMNPQRSTVWY"[number % 20] * 40
            + str(number).translate(str.maketrans("0123456789", "ACDEFGHIKL"))
        )
        checksum = sequence_checksum(sequence)
        name = f"L0064-{number:05d}"
        (chunk_dir / f"{name}.fasta").write_text(f">p{number}\n{sequence}\n")
        values = {"id": f"p{number}", "drop": "drop", "checksum": checksum, "length": len(sequence),
                  "status": "queued", "chunk": name}  # fmt: skip
        for field in MANIFEST.names:
            rows[field].append(values.get(field))
    pq.write_table(pa.Table.from_pydict(rows, schema=MANIFEST), chunk_dir / "manifest.parquet")
    # the split is up to date: drop older than the manifest
    past = time.time() - 3600
    os.utime(drop, (past, past))
    config = {"drops": [str(drop)], "outdir": str(directory / "out"), "model": "tiny", "device": "cpu"}
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def lay_out_bare(directory: Path, chunks: int) -> Path:
    (directory / "in").mkdir(parents=True)
    (directory / "drop.fasta").write_text(">p0\nMKV\n")
    names = [f"item{number:05d}" for number in range(chunks)]
    for name in names:
        (directory / "in" / f"{name}.txt").write_text("x\n")
    (directory / "plan.txt").write_text("\n".join(names) + "\n")
    past = time.time() - 3600
    os.utime(directory / "drop.fasta", (past, past))
    snakefile = directory / "Snakefile"
    snakefile.write_text("from pathlib import Path\n" + BARE_SNAKEFILE)
    return snakefile


def dry_run(command: list[str], cwd: Path) -> tuple[float, int]:
    """Seconds of one dry run and the number of jobs it planned."""
    start = time.perf_counter()
    result = subprocess.run([*command, "--dry-run"], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"dry run failed in {cwd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    jobs = 0
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            jobs = int(parts[1])
    return seconds, jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "rules"]
    with tempfile.TemporaryDirectory(prefix="dag-scale-") as tmp:
        atlas_dir, bare_dir = Path(tmp) / "atlas", Path(tmp) / "bare"
        atlas_dir.mkdir()
        config = lay_out_atlas(atlas_dir, args.chunks)
        snakefile = lay_out_bare(bare_dir, args.chunks)
        atlas_command = [*snakemake, "--snakefile", str(REPO / "Snakefile"), "--directory", str(REPO),
                         "--configfile", str(config)]  # fmt: skip
        bare_command = [*snakemake, "--snakefile", str(snakefile), "all.done"]
        figures = {"atlas": [], "bare": []}
        for _ in range(args.repeats):  # interleaved, so load changes hit both alike
            figures["atlas"].append(dry_run(atlas_command, REPO))
            figures["bare"].append(dry_run(bare_command, bare_dir))
    atlas_s = statistics.median(seconds for seconds, _ in figures["atlas"])
    bare_s = statistics.median(seconds for seconds, _ in figures["bare"])
    print(f"chunks: {args.chunks}")
    print(f"atlas workflow dry run: {atlas_s:.1f} s median, {figures['atlas'][0][1]} jobs planned")
    print(f"bare Snakemake dry run: {bare_s:.1f} s median, {figures['bare'][0][1]} jobs planned")
    print(f"ratio atlas / bare: {atlas_s / bare_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
