"""Throughput of `atlas split` beside `seqkit split2` on the same generated, MGnify-like protein FASTA.

    .venv/bin/python bench/split_throughput.py --size 1GB --both

Generates a FASTA of about --size bytes (log-normal lengths, median ~200 aa, UniProt residue frequencies, a
fraction of repeated sequences, 60-column lines) into a temporary directory, splits a 1 MB file untimed (the
first split after an install compiles the parser, once: the figure is printed), then times, each in its own
subprocess, (1) `python -m atlas split` with the default config settings and (2) `seqkit split2` cutting the
same file into parts of about the same number of sequences as our chunks, and prints wall time, MB/s and CPU
seconds and peak RSS of both, and their ratios (--both: the plain file, then its gzip -1). seqkit comes from
Debian (`apt-get install -y seqkit`) or bioconda; without it only our figures are printed. seqkit only cuts
the file; atlas split also normalises and validates every record, checksums it, deduplicates and sorts by
length, so the ratio is an upper bound of the overhead.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# UniProtKB/Swiss-Prot amino-acid composition (percent), release statistics.
COMPOSITION = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27,
    "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08,
    "Y": 2.92, "V": 6.87,
}  # fmt: skip
BUCKETS = [64, 128, 256, 384, 512, 768, 1024, 1280]


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]?)(i?B)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 200MB, 1GB)")
    unit = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[match.group(2).upper()]
    if match.group(3) and match.group(3).lower() == "ib":
        unit = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[match.group(2).upper()]
    return int(float(match.group(1)) * unit)


def generate(path: Path, size: int, seed: int, duplicates: float, width: int) -> tuple[int, int]:
    """Write about `size` bytes of FASTA; returns (records, bytes)."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer("".join(COMPOSITION).encode(), dtype=np.uint8)
    weights = np.array(list(COMPOSITION.values()))
    weights /= weights.sum()
    records = written = 0
    pool: list[bytes] = []
    with open(path, "wb") as handle:
        while written < size:
            lengths = np.clip(rng.lognormal(math.log(200), 0.65, 20_000).astype(int), 20, 3000)
            residues = letters[rng.choice(len(letters), size=int(lengths.sum()), p=weights)].tobytes()
            repeat = rng.random(len(lengths)) < duplicates
            out = []
            start = 0
            for length, again in zip(lengths.tolist(), repeat.tolist(), strict=True):
                sequence = residues[start : start + length]
                start += length
                if again and pool:
                    sequence = pool[records % len(pool)]
                elif len(pool) < 10_000:
                    pool.append(sequence)
                lines = (
                    b"\n".join(sequence[i : i + width] for i in range(0, len(sequence), width))
                    if width
                    else sequence
                )
                out.append(b">MGYP%012d\n%s\n" % (records, lines))
                records += 1
            chunk = b"".join(out)
            handle.write(chunk)
            written += len(chunk)
    return records, written


def timed(
    command: list[str], cwd: Path, log: Path, input_path: Path, stdin: Path | None = None
) -> tuple[float, float, float, int]:
    """Run a command: (wall seconds, CPU seconds (user + system), peak RSS in MiB, exit code), from the
    rusage of that one child (os.wait4), so nothing else this script ran is counted. Untimed, first: the
    input is read once, so that each command finds it in the page cache (atlas split's last pass drops the
    pages it has read for the last time), and dirty pages are written back (os.sync), so that neither
    command runs beside the write-back of the input just generated or of the other one's outputs."""
    with open(input_path, "rb") as handle:  # in pieces: the timed children inherit this process's RSS
        while handle.read(1 << 24):
            pass
    os.sync()
    start = time.perf_counter()
    with open(log, "wb") as out, open(stdin or os.devnull, "rb") as source:
        process = subprocess.Popen(command, cwd=cwd, stdin=source, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, process.returncode


def split_command(fasta: Path, outdir: Path, chunk_residues: int) -> list[str]:
    return [
        sys.executable, "-m", "atlas", "split", "--fasta", str(fasta), "--drop", "bench",
        "--manifest", str(outdir / "manifest.parquet"), "--earlier-manifests",
        "--min-length", "16", "--max-length", "1280",
        "--length-buckets", *map(str, BUCKETS), "--chunk-residues", str(chunk_residues),
    ]  # fmt: skip


def warm_up(workdir: Path, args) -> int:
    """Split a small file first, untimed: the first split after an install compiles the parser (numba,
    about 13 s on 2 cores, then cached beside the module or in the user's cache), which no later split
    pays; the timed runs measure what every split costs. Returns the exit code."""
    fasta = workdir / "warm-up.fasta"
    generate(fasta, 1_000_000, args.seed + 1, args.duplicates, args.line_width)
    start = time.perf_counter()
    done = subprocess.run(
        split_command(fasta, workdir / "warm-up", args.chunk_residues), cwd=REPO, capture_output=True
    )
    if done.returncode:
        print(done.stdout.decode() + done.stderr.decode())
        print(f"atlas split failed on the warm-up file (exit {done.returncode})")
    else:
        took = time.perf_counter() - start
        print(f"warm-up: a 1 MB split took {took:.1f} s (the first split of an install compiles the parser)")
    shutil.rmtree(workdir / "warm-up", ignore_errors=True)
    fasta.unlink()
    return done.returncode


def compare(fasta: Path, kind: str, workdir: Path, records: int, mb: float, args) -> int:
    """Time atlas split, then seqkit split2, on one input; print both and their ratios. Returns the exit
    code."""
    gzip = kind == "gzip"
    workdir.mkdir()
    ours_command = split_command(fasta, workdir / "atlas", args.chunk_residues)
    print(f"--- {kind} input: {fasta.name}")
    load = os.getloadavg()[0]
    seconds, cpu, rss, rc = timed(ours_command, REPO, workdir / "atlas.log", fasta)
    log = (workdir / "atlas.log").read_text().strip().split("\n")
    print("\n".join(line.split("\r")[-1] for line in log))  # last state of each progress bar
    if rc:
        print(f"atlas split failed (exit {rc})")
        return 1
    chunks = len(list((workdir / "atlas").glob("*.fasta")))
    row = "{:<14} {:7.1f} s wall {:7.1f} MB/s   {:7.1f} s CPU {:7.1f} MB/CPU-s   peak RSS {:6.0f} MiB  {}"
    print(f"load average before the runs: {load:.1f} on {os.cpu_count()} CPUs (the machine may be shared)")
    print(row.format("atlas split", seconds, mb / seconds, cpu, mb / cpu, rss, f"({chunks} chunks)"))

    seqkit = shutil.which("seqkit")
    if seqkit is None:
        print("seqkit split2: NOT RUN: seqkit is not installed (apt-get install -y seqkit, or bioconda)")
        return 0
    version = subprocess.run([seqkit, "version"], capture_output=True, text=True).stdout.strip()
    per_part = max(1, round(records / max(1, chunks)))
    threads = args.threads or os.cpu_count() or 1
    # gzip input goes in on stdin: seqkit then writes plain FASTA parts, as we do (from a .gz file
    # name it would gzip every part, and time compression).
    seqkit_command = [
        seqkit, "split2", "--by-size", str(per_part), "--threads", str(threads),
        "--out-dir", str(workdir / "seqkit"), "--force", *([] if gzip else [str(fasta)]),
    ]  # fmt: skip
    other_seconds, other_cpu, other_rss, rc = timed(
        seqkit_command, REPO, workdir / "seqkit.log", fasta, stdin=fasta if gzip else None
    )
    if rc:
        print((workdir / "seqkit.log").read_text())
        print(f"seqkit split2 failed (exit {rc})")
        return 1
    parts = len(list((workdir / "seqkit").iterdir()))
    note = f"({parts} parts of {per_part} sequences, {version}, -j {threads})"
    rates = (other_seconds, mb / other_seconds, other_cpu, mb / other_cpu, other_rss)
    print(row.format("seqkit split2", *rates, note))
    print(
        f"ratio atlas split / seqkit split2 ({kind}): throughput x{other_seconds / seconds:.2f} of seqkit's, "
        f"wall x{seconds / other_seconds:.1f}, CPU x{cpu / other_cpu:.1f}, peak RSS x{rss / other_rss:.1f}; "
        f"load average after: {os.getloadavg()[0]:.1f}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("200MB"), help="e.g. 200MB, 1GB")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duplicates", type=float, default=0.05, help="fraction of repeated sequences")
    parser.add_argument("--line-width", type=int, default=60, help="0: one line per sequence")
    parser.add_argument("--chunk-residues", type=int, default=500_000)
    parser.add_argument("--gzip", action="store_true", help="compress the input (gzip -1) before timing")
    parser.add_argument("--both", action="store_true", help="time the plain input, then its gzip -1")
    parser.add_argument("--threads", type=int, default=None, help="seqkit -j (default: all CPUs)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated file and outputs")
    parser.add_argument(
        "--input", type=Path, default=None, help="time this (plain) FASTA instead of generating one"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="split-bench-", dir=args.workdir))
    try:
        fasta = workdir / "drop.fasta"
        if args.input:
            shutil.copyfile(args.input, fasta)
            records, size = 0, fasta.stat().st_size
            with open(fasta, "rb") as handle:  # in pieces: the timed children inherit this process's RSS
                while piece := handle.read(1 << 24):
                    records += piece.count(b">")
            print(f"copied {args.input}: {records:,} records, {size / 1e6:,.0f} MB")
        else:
            start = time.perf_counter()
            records, size = generate(fasta, args.size, args.seed, args.duplicates, args.line_width)
            took = time.perf_counter() - start
            print(f"generated {fasta}: {records:,} records, {size / 1e6:,.0f} MB in {took:.0f} s")
        mb = size / 1e6  # rates are in MB of uncompressed FASTA per second
        if warm_up(workdir, args):
            return 1
        kinds = ["plain", "gzip"] if args.both else ["gzip" if args.gzip else "plain"]
        for kind in kinds:
            if kind == "gzip":
                subprocess.run(["gzip", "-1", "--keep", str(fasta)], check=True)
                print(f"gzip -1: {fasta.with_suffix('.fasta.gz').stat().st_size / 1e6:,.0f} MB")
            source = fasta.with_suffix(".fasta.gz") if kind == "gzip" else fasta
            if compare(source, kind, workdir / kind, records, mb, args):
                return 1
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
