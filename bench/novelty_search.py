"""Cost of the novelty search: old vs new settings, the per-job fixed cost, and a fit of CPU per query.

    .venv/bin/python bench/novelty_search.py compare --reference-size 500000 --queries 2000
    .venv/bin/python bench/novelty_search.py fixed-cost --reference-size 500000 --queries 2000
    .venv/bin/python bench/novelty_search.py fit --reference-sizes 100000 1000000 --queries 2000

The reference is generated, not downloaded (no package ships a large protein set; see below): protein
families grown from ~7,500 real seeds (tests/data: the E. coli proteome, MGnify and Prodigal proteins), each
member a copy of its seed at 35-89% identity (substitutions drawn from the seeds' own amino-acid composition,
1-3 indels, ends trimmed by up to 10%), so a reference of N sequences holds ~N/7,500 members per family. The
queries are the issue's mix: half copies of reference members with 5% substitutions (not novel), half
shuffled reference members (real composition and lengths, no homology: novel).

compare    runs the product code (`atlas.novelty.search_chunk`) twice on the same queries and reference, in
           one run: old = `-s 5.7` on the database without a precomputed index (as a reference under 256 MB
           was searched before), new = the default sensitivity on the content-keyed, indexed database
           (`build_reference`); prints wall and CPU seconds of each, their ratio, and whether every novel
           call is the same (and as constructed).
fixed-cost runs `atlas novelty` (the rule's command: Python start, imports, MMseqs2 start, index mapping)
           with 1 query and with --queries queries on the indexed reference; the 1-query time is the
           per-job fixed cost, printed as a fraction of the larger job.
fit        measures CPU seconds per query (new settings) at each reference size, fits
           cpu_per_query = a + b * reference_size, and prints the core-hours of MGnify90 (617 M queries)
           against UniRef90 (~190 M sequences) that the fit predicts.

Everything lives under --workdir (default /tmp/atlas-bench-novelty), generated FASTAs and databases are
reused between runs of the same size and seed. Threads: --threads (default 2).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from atlas import novelty  # noqa: E402
from atlas.fasta import read_fasta, sequence_checksum  # noqa: E402

TEST_DATA = REPO / "tests" / "data"
SEED_FILES = ("UP000000625_83333.fasta", "mgnifam_all_seqs_concat.fa", "938293.PRJEB85.HG003687.faa")
AMINO_ACIDS = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)
MGNIFY90_QUERIES = 617e6
UNIREF90_SIZE = 190e6


def real_seeds() -> list[np.ndarray]:
    seeds = []
    for name in SEED_FILES:
        for record in read_fasta(TEST_DATA / name):
            sequence = record.sequence.encode()
            if 30 <= len(sequence) <= 1500 and not sequence.translate(None, AMINO_ACIDS.tobytes()):
                seeds.append(np.frombuffer(sequence, dtype=np.uint8))
    return seeds


def composition(seeds: list[np.ndarray]) -> np.ndarray:
    counts = np.bincount(np.concatenate(seeds), minlength=256)[AMINO_ACIDS].astype(float)
    return counts / counts.sum()


def member(seed: np.ndarray, identity: float, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A family member: substitutions to `identity`, 1-3 indels of 1-8 residues, ends trimmed by <= 10%."""
    sequence = seed.copy()
    substituted = rng.random(len(sequence)) < 1 - identity
    sequence[substituted] = rng.choice(AMINO_ACIDS, size=int(substituted.sum()), p=background)
    for _ in range(rng.integers(1, 4)):
        at, size = int(rng.integers(0, len(sequence))), int(rng.integers(1, 9))
        if rng.random() < 0.5:
            sequence = np.concatenate([sequence[:at], sequence[at + size :]])
        else:
            inserted = rng.choice(AMINO_ACIDS, size=size, p=background)
            sequence = np.concatenate([sequence[:at], inserted, sequence[at:]])
    left, right = (int(rng.integers(0, max(1, len(sequence) // 20))) for _ in range(2))
    return sequence[left : len(sequence) - right]


def reference_fasta(workdir: Path, size: int, seed: int) -> Path:
    path = workdir / f"reference-{size}-seed{seed}.fasta"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    seeds = real_seeds()
    background = composition(seeds)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        for number in range(size):
            parent = seeds[int(rng.integers(0, len(seeds)))]
            sequence = member(parent, float(rng.uniform(0.35, 0.89)), rng, background)
            handle.write(b">ref%d\n%s\n" % (number, sequence.tobytes()))
    os.replace(tmp, path)
    return path


def query_fasta(workdir: Path, reference: Path, count: int, seed: int) -> tuple[Path, dict[str, bool]]:
    """count queries (half 5%-substituted reference members, half shuffled members); checksum -> novel."""
    records = [record.sequence for record in read_fasta(reference)]
    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(len(records), size=count, replace=False)
    expected: dict[str, bool] = {}
    path = workdir / f"queries-{reference.stem}-{count}.fasta"
    with open(path, "w") as handle:
        for number, index in enumerate(picked):
            sequence = np.frombuffer(records[index].encode(), dtype=np.uint8).copy()
            if number < count // 2:
                substituted = rng.choice(len(sequence), size=round(0.05 * len(sequence)), replace=False)
                for position in substituted:
                    sequence[position] = rng.choice(AMINO_ACIDS[sequence[position] != AMINO_ACIDS])
                novel = False
            else:
                rng.shuffle(sequence)
                novel = True
            text = sequence.tobytes().decode()
            expected[sequence_checksum(text)] = novel
            handle.write(f">q{number}\n{text}\n")
    return path, expected


def databases(workdir: Path, fasta: Path, threads: int) -> tuple[Path, Path, float]:
    """(reference.json of the unindexed database, reference.json of the indexed build, build seconds)."""
    plain = workdir / f"{fasta.stem}-plain" / "db"
    if not Path(f"{plain}.dbtype").exists():
        plain.parent.mkdir(parents=True, exist_ok=True)
        novelty.run_mmseqs(novelty.find_mmseqs(), ["createdb", fasta, plain, "--dbtype", "1"])
    old_json = workdir / f"{fasta.stem}-old" / "reference.json"
    novelty.build_reference(plain, old_json)
    new_json = workdir / f"{fasta.stem}-new" / "reference.json"
    started = time.perf_counter()
    info = novelty.build_reference(fasta, new_json, threads=threads, cache=workdir / "cache")
    built = time.perf_counter() - started
    return old_json, new_json, (0.0 if info["reused"] else built)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_search(queries: Path, reference_json: Path, output: Path, sensitivity: float, threads: int) -> dict:
    wall, cpu = time.perf_counter(), children_cpu()
    novelty.search_chunk(queries, reference_json, output, sensitivity=sensitivity, threads=threads)
    wall, cpu = time.perf_counter() - wall, children_cpu() - cpu
    calls = dict(zip(*pq.read_table(output, columns=["checksum", "novel"]).to_pydict().values(), strict=True))
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "calls": calls}


def compare(args: argparse.Namespace) -> dict:
    fasta = reference_fasta(args.workdir, args.reference_size, args.seed)
    queries, expected = query_fasta(args.workdir, fasta, args.queries, args.seed)
    old_json, new_json, build_s = databases(args.workdir, fasta, args.threads)
    old = timed_search(queries, old_json, args.workdir / "old.parquet", 5.7, args.threads)
    new = timed_search(
        queries, new_json, args.workdir / "new.parquet", novelty.DEFAULT_SENSITIVITY, args.threads
    )
    differing = sum(old["calls"][c] != new["calls"][c] for c in expected)
    return {
        "reference_size": args.reference_size,
        "queries": args.queries,
        "threads": args.threads,
        "old (-s 5.7, no index)": {k: v for k, v in old.items() if k != "calls"},
        f"new (-s {novelty.DEFAULT_SENSITIVITY:g}, index, mmap)": {
            k: v for k, v in new.items() if k != "calls"
        },
        "wall_ratio_old_over_new": round(old["wall_s"] / new["wall_s"], 2),
        "cpu_ratio_old_over_new": round(old["cpu_s"] / new["cpu_s"], 2),
        "index_build_s (once per reference content)": round(build_s, 1),
        "calls_differing": differing,
        "old_calls_as_constructed": sum(old["calls"][c] == v for c, v in expected.items()),
        "new_calls_as_constructed": sum(new["calls"][c] == v for c, v in expected.items()),
    }


def run_cli(queries: Path, reference_json: Path, output: Path, threads: int) -> float:
    command = [sys.executable, "-m", "atlas", "novelty", "--fasta", queries, "--reference-db", reference_json]
    command += ["--output", output, "--threads", str(threads)]
    started = time.perf_counter()
    subprocess.run(list(map(str, command)), check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - started


def fixed_cost(args: argparse.Namespace) -> dict:
    fasta = reference_fasta(args.workdir, args.reference_size, args.seed)
    queries, _ = query_fasta(args.workdir, fasta, args.queries, args.seed)
    _, new_json, _ = databases(args.workdir, fasta, args.threads)
    one = args.workdir / "one-query.fasta"
    one.write_text("".join(queries.read_text().splitlines(keepends=True)[:2]))
    run_cli(one, new_json, args.workdir / "warm.parquet", args.threads)  # page cache warm, as on a busy node
    single = min(run_cli(one, new_json, args.workdir / "one.parquet", args.threads) for _ in range(3))
    many = run_cli(queries, new_json, args.workdir / "many.parquet", args.threads)
    per_query = (many - single) / (args.queries - 1)
    return {
        "reference_size": args.reference_size,
        "job_with_1_query_s (fixed cost)": round(single, 2),
        f"job_with_{args.queries}_queries_s": round(many, 2),
        "fixed_fraction_of_the_larger_job": round(single / many, 3),
        "queries_per_job_for_fixed_cost_under_10%": int(np.ceil(9 * single / per_query)),
    }


def fit(args: argparse.Namespace) -> dict:
    points = []
    for size in args.reference_sizes:
        fasta = reference_fasta(args.workdir, size, args.seed)
        queries, _ = query_fasta(args.workdir, fasta, args.queries, args.seed)
        _, new_json, _ = databases(args.workdir, fasta, args.threads)
        run = timed_search(
            queries, new_json, args.workdir / f"fit-{size}.parquet", novelty.DEFAULT_SENSITIVITY, 1
        )
        points.append((size, run["cpu_s"] / args.queries))
    sizes, per_query = np.array(points).T
    slope, intercept = np.polyfit(sizes, per_query, 1)
    at_uniref90 = intercept + slope * UNIREF90_SIZE
    return {
        "cpu_s_per_query": {int(size): round(value, 5) for size, value in points},
        "fit": f"cpu_s_per_query = {intercept:.3g} + {slope:.3g} * reference_size",
        "cpu_s_per_query_at_uniref90 (190 M)": round(at_uniref90, 3),
        "mgnify90_core_hours (617 M queries)": f"{MGNIFY90_QUERIES * at_uniref90 / 3600:.3g}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["compare", "fixed-cost", "fit"])
    parser.add_argument("--reference-size", type=int, default=500_000)
    parser.add_argument("--reference-sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/atlas-bench-novelty"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    result = {"compare": compare, "fixed-cost": fixed_cost, "fit": fit}[args.mode](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
