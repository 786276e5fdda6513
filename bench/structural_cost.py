"""Per-chunk cost of the structural step, search and verification apart, at two reference sizes.

    python bench/structural_cost.py [--sizes 2000 20000] [--threads 1]

Queries: the 92 chains of the truth set (tests/data/structures and the ESMFold PDBs), one chunk. References:
N entries made from the truth set's real chains (random windows of 40-400 residues, moved by a random rigid
motion and 0.3 A of coordinate noise, so their 3Di strings differ) plus the truth set itself; the search's
cost grows with the reference's residues, verification's with K and the hit rate, not its size. Prints,
per size: the reference's entries and residues, the build time, the 3Di search per query and the TM-align
verification per query (at the schema's top_k and min_tm), and the ratio of the larger to the smaller size,
the figures docs/scale.md extrapolates from.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]
from structural_recall import DATA, ESMFOLD_PDBS, schema_defaults  # noqa: E402

from atlas.structural import (  # noqa: E402
    Chain,
    Reference,
    SearchSettings,
    encode_3di,
    read_chain,
    search_3di,
    verify,
    write_reference,
)


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def synthetic_entries(chains: list[Chain], count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for index in range(count):
        chain = chains[rng.integers(len(chains))]
        length = len(chain.sequence)
        window = int(rng.integers(min(40, length), min(400, length) + 1))
        start = int(rng.integers(0, length - window + 1))
        rotation, shift = random_rotation(rng), rng.normal(scale=20, size=3)

        piece = slice(start, start + window)
        moved = [
            xyz[piece] @ rotation.T + shift + rng.normal(scale=0.3, size=xyz[piece].shape)
            for xyz in (chain.n, chain.ca, chain.c, chain.cb)
        ]
        yield f"synthetic{index}", Chain(chain.sequence[piece], *moved)


def measure(
    size: int, chains: dict[str, Chain], workdir: Path, settings: SearchSettings, k: int, min_tm: float
):
    build_dir = workdir / f"ref{size}"
    build_dir.mkdir()
    started = time.perf_counter()
    entries = [*chains.items(), *synthetic_entries(list(chains.values()), size)]
    stamp = write_reference(entries, build_dir, {"source": f"bench {size}"})
    build_s = time.perf_counter() - started
    (workdir / f"ref{size}.json").write_text(json.dumps({"path": build_dir.name}))
    reference = Reference(workdir / f"ref{size}.json")
    started = time.perf_counter()
    states = {name: encode_3di(chain) for name, chain in chains.items()}
    encode_s = time.perf_counter() - started
    search_dir = workdir / f"search{size}"
    search_dir.mkdir()
    started = time.perf_counter()
    candidates = search_3di(states, reference, search_dir, settings)
    search_s = time.perf_counter() - started
    started = time.perf_counter()
    aligns = known = 0
    for name, chain in chains.items():
        verdict = verify(chain, [t for t in candidates[name] if not t.startswith(name)], reference, k, min_tm)
        aligns += verdict.verified
        known += not verdict.novel
    verify_s = time.perf_counter() - started
    queries = len(chains)
    return {
        "entries": stamp["entries"],
        "residues": stamp["residues"],
        "build_s": round(build_s, 1),
        "encode_ms_per_query": round(1000 * encode_s / queries, 2),
        "search_ms_per_query": round(1000 * search_s / queries, 1),
        "verify_ms_per_query": round(1000 * verify_s / queries, 1),
        "tm_aligns_per_query": round(aligns / queries, 1),
        "ms_per_tm_align": round(1000 * verify_s / max(1, aligns), 1),
        "known": known,
        "queries": queries,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    defaults = schema_defaults()
    settings = SearchSettings(
        defaults["sensitivity"], defaults["max_seqs"], args.threads, defaults["prefilter_mode"]
    )
    paths = sorted((DATA / "structures").glob("*.pdb.gz")) + ESMFOLD_PDBS
    chains = {path.name.split(".pdb")[0]: read_chain(path) for path in paths}
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in args.sizes:
            result = measure(size, chains, Path(workdir), settings, defaults["top_k"], defaults["min_tm"])
            results.append(result)
            print(json.dumps({"size": size, **result}), flush=True)
    small, large = results
    print(
        json.dumps(
            {
                "residue_ratio": round(large["residues"] / small["residues"], 2),
                "search_ratio": round(large["search_ms_per_query"] / small["search_ms_per_query"], 2),
                "verify_ratio": round(large["verify_ms_per_query"] / small["verify_ms_per_query"], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
