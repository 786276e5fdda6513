"""What the split cannot go below on this machine: the CPU of its unavoidable steps, per GB of input.

    .venv/bin/python bench/split_floor.py --size 1GB

On the same generated, MGnify-like FASTA as bench/split_throughput.py, times in this process (CPU seconds,
user + system, from getrusage) the steps any split that keeps today's outputs must do:

- read: the file in 16 MB blocks by positioned reads, as the split reads a plain file
  (atlas.fasta.iter_plain_blocks);
- parse: atlas.blockparse's parse over every block (records, normalisation, checks, CRC64);
- MD5: atlas.blockparse's MD5 of every normalised sequence (16 at once), beside one hashlib call per
  sequence for comparison (not counted in the sum);
- cut again: atlas.blockparse's records_text over every block, the write pass's cut of the queued records
  from the input's bytes (here every record);
- write: as many bytes as the chunk FASTAs hold, to a file in --workdir (the output's file system);
- the same write again for what the split stores between its passes (its parts: the record columns, about
  0.34 x the input; the sequences are cut again from the input).

and prints each per GB and the wall time they would take on all CPUs with perfect parallelism, beside
issue #13's target of 200 MB/s. Compare with `atlas split`'s own figures from bench/split_throughput.py.
On a VM the first write into memory the guest has not touched yet costs more system time than a write into
memory just freed (the second write here): run it twice and read both.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402
from split_throughput import generate, parse_size  # noqa: E402

from atlas.blockparse import md5_digests, parse_block_arrays, records_text  # noqa: E402
from atlas.chunking import _split_settings  # noqa: E402
from atlas.fasta import iter_plain_blocks  # noqa: E402

PARTS_SHARE = 0.34  # the split's parts, as a share of the input (atlas.chunking's module docstring)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("1GB"), help="e.g. 200MB, 1GB")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate and write")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="split-floor-", dir=args.workdir))
    fasta = workdir / "drop.fasta"
    records, size = generate(fasta, args.size, seed=0, duplicates=0.05, width=60)
    gb = size / 1e9
    costs = dict.fromkeys(("read", "parse and MD5 (compiled)", "cut again (compiled)"), 0.0)
    md5_costs = dict.fromkeys(("(of which MD5, 16 at once)", "(MD5 by a hashlib call each)"), 0.0)
    fasta_bytes = 0
    with _split_settings():  # the split's malloc settings (memory kept for the next blocks)
        clock = cpu()
        for block in iter_plain_blocks(fasta, block_size=1 << 24):  # a block at a time, as the split reads
            start = cpu()
            costs["read"] += start - clock
            arrays = parse_block_arrays(block.data)
            parsed = cpu()
            costs["parse and MD5 (compiled)"] += parsed - start
            md5_digests(arrays.residues, arrays.offsets)
            hashed = cpu()
            md5_costs["(of which MD5, 16 at once)"] += hashed - parsed
            residues, offsets = arrays.residues.tobytes(), arrays.offsets.tolist()
            for first, last in zip(offsets, offsets[1:], strict=False):
                hashlib.md5(residues[first:last]).digest()
            done = cpu()
            md5_costs["(MD5 by a hashlib call each)"] += done - hashed
            lengths = np.diff(arrays.offsets).astype(np.int64)
            every = np.arange(len(lengths))
            text = np.frombuffer(block.data, np.uint8)
            records_text(text, arrays.bodies, arrays.ids, arrays.id_offsets, lengths, every, every % 32, 32)
            clock = cpu()
            costs["cut again (compiled)"] += clock - done
            fasta_bytes += len(arrays.residues) + len(arrays.ids) + 3 * len(arrays.lines)
        piece = os.urandom(1 << 24)
        for name, total in (("write the chunk FASTAs", fasta_bytes), ("write the parts", PARTS_SHARE * size)):
            target = workdir / "written"
            clock = cpu()
            with open(target, "wb") as handle:
                for _ in range(round(total / len(piece))):
                    handle.write(piece)
            costs[name] = cpu() - clock
            target.unlink()
    fasta.unlink()
    workdir.rmdir()

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"{records:,} records, {size / 1e6:,.0f} MB, {cpus} CPUs")
    for name, seconds in costs.items():
        print(f"  {name:<28} {seconds / gb:6.2f} CPU-s per GB")
    total = sum(costs.values()) / gb
    for name, seconds in md5_costs.items():
        print(f"  {name:<28} {seconds / gb:6.2f} CPU-s per GB")
    print(f"  {'sum':<28} {total:6.2f} CPU-s per GB: at best {1000 / (total / cpus):.0f} MB/s on {cpus} CPUs")
    print(f"  issue #13's target, 200 MB/s on {cpus} CPUs, allows {cpus * 5:.1f} CPU-s per GB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
