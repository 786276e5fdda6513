"""Could biotite's BSD TM-score replace tmtools' TM-align (GPLv3) for the verification step?

    python bench/structural_biotite_tm.py [--far 100] [--max-iterations 20]

Pairs of the truth set (tests/data/structures/tm_truth.tsv.gz, TM-align normalised by the query): every pair
at TM >= 0.4 and `--far` random pairs below. Each is aligned with biotite's
`superimpose_structural_homologs` (3Di alphabet, capped at --max-iterations: the default, no cap, did not
finish on 1ahs_A against 3nng_A) and scored with `tm_score`, normalised by the query. Prints how often the
`>= 0.5` ("known") call agrees with TM-align, the false "known" calls and the missed ones, and the mean
difference of the scores.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import random
import time
from pathlib import Path

import numpy as np

STRUCTURES = Path(__file__).resolve().parents[1] / "tests" / "data" / "structures"
MIN_TM = 0.5


def load(name: str, cache: dict):
    import biotite.structure as struc
    import biotite.structure.io.pdb as pdb

    if name not in cache:
        with gzip.open(STRUCTURES / f"{name}.pdb.gz", "rt") as handle:
            atoms = pdb.PDBFile.read(io.StringIO(handle.read())).get_structure(model=1)
        cache[name] = atoms[struc.filter_amino_acids(atoms) & ~atoms.hetero]
    return cache[name]


def main() -> None:
    import biotite.structure as struc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--far", type=int, default=100, help="random pairs below TM 0.4")
    parser.add_argument("--max-iterations", type=int, default=20)
    args = parser.parse_args()
    with gzip.open(STRUCTURES / "tm_truth.tsv.gz", "rt") as handle:
        rows = [{**row, "tm": float(row["tm"])} for row in csv.DictReader(handle, delimiter="\t")]
    rows = [
        row
        for row in rows
        if all((STRUCTURES / f"{row[key]}.pdb.gz").is_file() for key in ("query", "target"))
    ]
    far = random.Random(1).sample([row for row in rows if row["tm"] < 0.4], args.far)
    sample = [row for row in rows if row["tm"] >= 0.4] + far
    cache: dict = {}
    calls = {"agree": 0, "false_known": 0, "missed": 0}
    differences, seconds = [], 0.0
    for row in sample:
        query, target = load(row["query"], cache), load(row["target"], cache)
        length = struc.get_residue_count(query)
        started = time.perf_counter()
        fitted, _, target_indices, query_indices = struc.superimpose_structural_homologs(
            target, query, reference_length=length, max_iterations=args.max_iterations
        )
        score = struc.tm_score(target, fitted, target_indices, query_indices, reference_length=length)
        seconds += time.perf_counter() - started
        truth, call = row["tm"] >= MIN_TM, score >= MIN_TM
        calls["agree" if truth == call else "false_known" if call else "missed"] += 1
        differences.append(score - row["tm"])
    known = sum(row["tm"] >= MIN_TM for row in sample)
    print(f"pairs: {len(sample)}, of them known by TM-align (TM >= {MIN_TM}): {known}")
    print(
        f"same call: {calls['agree']}; false known: {calls['false_known']}; missed known: {calls['missed']}"
        f" ({calls['missed'] / max(known, 1):.0%} of the known)"
    )
    print(f"biotite TM - TM-align TM: mean {np.mean(differences):+.3f}")
    print(f"biotite: {seconds / len(sample) * 1000:.0f} ms per pair")


if __name__ == "__main__":
    main()
