"""Recall and false-known rate of the structural search on the truth set of tests/data/structures.

    python bench/structural_recall.py [--sensitivity 9.5] [--max-seqs 1000] [--prefilter-mode 0]

Every chain of the truth set (and the three ESMFold PDBs of tests/data) is a query against a reference of the
truth set's chains, its own entry left out. A query is known when some other chain aligns at TM >= 0.5
(normalised by the query, tm_truth.tsv.gz). Prints, per K (TM-aligns at most), recall of the known queries,
false "known" calls, and the mean TM-aligns per query; and the search's and verification's wall time.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atlas.structural import (  # noqa: E402
    Reference,
    SearchSettings,
    build_reference,
    encode_3di,
    read_chain,
    search_3di,
    verify,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ESMFOLD_PDBS = sorted(DATA.glob("*esmfold*.pdb"))
MIN_TM = 0.5


def schema_defaults() -> dict:
    """The structural_novelty defaults of the config schema (defined once, there)."""
    import yaml

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    return {
        key: value["default"]
        for key, value in schema["properties"]["structural_novelty"]["properties"].items()
    }


def truth_known(min_tm: float = MIN_TM) -> dict[str, float]:
    """Best TM-score (normalised by the query) of each truth-set query against the other chains."""
    best: dict[str, float] = {}
    with gzip.open(DATA / "structures" / "tm_truth.tsv.gz", "rt") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if (DATA / "structures" / f"{row['target']}.pdb.gz").is_file():
                best[row["query"]] = max(best.get(row["query"], 0.0), float(row["tm"]))
    return best


def evaluate(settings: SearchSettings, ks: list[int], workdir: Path) -> list[dict]:
    reference_json = workdir / "structure_reference" / "reference.json"
    build_reference(DATA / "structures", reference_json)
    reference = Reference(reference_json)
    paths = sorted((DATA / "structures").glob("*.pdb.gz")) + ESMFOLD_PDBS
    chains = {path.name.split(".pdb")[0]: read_chain(path) for path in paths}
    started = time.perf_counter()
    states = {name: encode_3di(chain) for name, chain in chains.items()}
    search_dir = workdir / "search"
    search_dir.mkdir()
    candidates = search_3di(states, reference, search_dir, settings)
    search_s = time.perf_counter() - started
    best = truth_known()
    known = sum(tm >= MIN_TM for tm in best.values())
    started = time.perf_counter()
    # one pass at the largest K: a query found at K=k is one whose first TM >= min_tm hit came within k
    verdicts = {
        name: verify(
            chain, [t for t in candidates[name] if not t.startswith(f"{name}_")], reference, max(ks), MIN_TM
        )
        for name, chain in chains.items()
    }
    verify_s = time.perf_counter() - started
    total_aligns = sum(verdict.verified for verdict in verdicts.values())
    rows = []
    for k in ks:
        found = sum(
            1
            for name, v in verdicts.items()
            if not v.novel and v.verified <= k and best.get(name, 0.0) >= MIN_TM
        )
        false_known = sum(1 for name, v in verdicts.items() if not v.novel and best.get(name, 0.0) < MIN_TM)
        aligns = sum(min(verdict.verified, k) for verdict in verdicts.values())
        rows.append(
            {
                "k": k,
                "known": known,
                "found": found,
                "recall": round(found / known, 3),
                "false_known": false_known,
                "aligns_per_query": round(aligns / len(chains), 1),
                "search_s": round(search_s, 2),
                "verify_s_at_max_k": round(verify_s, 2),
                "aligns_at_max_k": total_aligns,
                "queries": len(chains),
                "reference": len(reference),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = schema_defaults()
    parser.add_argument("--sensitivity", type=float, default=defaults["sensitivity"])
    parser.add_argument("--max-seqs", type=int, default=defaults["max_seqs"])
    parser.add_argument("--prefilter-mode", type=int, default=defaults["prefilter_mode"])
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20, 50])
    args = parser.parse_args()
    settings = SearchSettings(args.sensitivity, args.max_seqs, 1, args.prefilter_mode)
    with tempfile.TemporaryDirectory() as workdir:
        for row in evaluate(settings, args.k, Path(workdir)):
            print("\t".join(f"{key}={value}" for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
