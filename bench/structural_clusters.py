"""Cost of adding a drop to the clusters (clusterupdate) against reclustering everything (linclust).

    python bench/structural_clusters.py [--new-fraction 0.2] [--n 1000000]

Real proteins (the E. coli proteome and the MGnify proteins of tests/data), or with --n that many family
members grown from them (bench/novelty_search.py's generator: 35-89% identity to a real seed, indels, trimmed
ends): the first part is drop 1, then the rest is added as drop 2 with atlas.clusters.cluster_drop
(concatdbs + clusterupdate), and, as the baseline in the same run, all of them are clustered from scratch
with linclust. Prints both wall times, their ratio and the numbers of clusters.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atlas.clusters import CONFIDENT, cluster_drop  # noqa: E402
from atlas.fasta import read_fasta, sequence_checksum  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def proteins() -> list[str]:
    seen: dict[str, None] = {}
    for name in ("UP000000625_83333.fasta", "mgnifam_all_seqs_concat.fa"):
        for record in read_fasta(DATA / name):
            sequence = record.sequence.upper()
            if len(sequence) >= 30 and set(sequence) <= set("ACDEFGHIKLMNPQRSTVWY"):
                seen.setdefault(sequence)
    return list(seen)


def family_members(count: int, seed: int) -> list[str]:
    """`count` distinct generated proteins, families around the real seeds (bench/novelty_search.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    from novelty_search import composition, member, real_seeds

    rng = np.random.default_rng(seed)
    seeds = real_seeds()
    background = composition(seeds)
    made: dict[str, None] = {}
    while len(made) < count:
        parent = seeds[int(rng.integers(0, len(seeds)))]
        made.setdefault(member(parent, float(rng.uniform(0.35, 0.89)), rng, background).tobytes().decode())
    return list(made)


def table(sequences: list[str]) -> pa.Table:
    checksums = [sequence_checksum(sequence) for sequence in sequences]
    return pa.table([checksums, sequences, [0.5] * len(sequences)], schema=CONFIDENT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=0, help="generated family members (0: the real proteins)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sequences = family_members(args.n, args.seed) if args.n else proteins()
    split = int(len(sequences) * (1 - args.new_fraction))
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir)
        cluster_drop(
            [table(sequences[:split])], "d1", None, out / "d1.parquet", out / "d1", threads=args.threads
        )
        started = time.perf_counter()
        cluster_drop(
            [table(sequences[split:])], "d2", out / "d1", out / "d2.parquet", out / "d2", threads=args.threads
        )
        update_s = time.perf_counter() - started
        started = time.perf_counter()
        cluster_drop([table(sequences)], "all", None, out / "all.parquet", out / "all", threads=args.threads)
        full_s = time.perf_counter() - started
        drop1 = pq.read_table(out / "d1.parquet").to_pylist()
        drop2 = pq.read_table(out / "d2.parquet").to_pylist()
        full = pq.read_table(out / "all.parquet").to_pylist()
    result = {
        "sequences": len(sequences),
        "drop1": split,
        "drop2": len(sequences) - split,
        "clusterupdate_s": round(update_s, 2),
        "full_linclust_s": round(full_s, 2),
        "update_over_full": round(update_s / full_s, 2),
        "clusters_incremental": len({row["cluster"] for row in drop1 + drop2}),
        "clusters_full": len({row["cluster"] for row in full}),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
