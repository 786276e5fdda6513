"""The MGnify-scale rehearsal: the real Snakemake DAG over N generated MGnify-like sequences, per stage.

    .venv/bin/python bench/scale.py --n 100000 --outdir /tmp/scale     # a quick look
    .venv/bin/python bench/scale.py --n 10000000 --outdir /data/scale  # the rehearsal of issue 12

Generates two drops in DIR/input (drop 1: 80% of N, drop 2: 20% of N of which a third repeats drop 1;
lengths drawn from the real MGnify proteins of tests/data, residues with UniProt frequencies, 5% repeats
inside a drop), writes DIR/config.yaml and runs `snakemake` stage by stage (a target per stage),
then times a one-id `atlas query` and `atlas export`. Only the neural network is replaced: bench/standin/
goes on PYTHONPATH (its sitecustomize.py swaps atlas.fold.Folder._forward for realistic outputs built from
real ESMFold structures); every other line of the fold jobs runs as in production. Novelty runs when
--reference is given.

Per stage: wall_s (the stage's snakemake invocation), cpu_s, peak_rss_mb (from the jobs' benchmark files),
bytes_written (the stage's output folders), jobs; plus snakemake_dry_run_s (building the whole finished
DAG: Snakemake's own scheduling cost), predictions_bytes_per_residue, query_one_id_s, export_one_id_s.
Everything goes to DIR/scale.json and is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "bench" / "standin"
REAL_LENGTHS = REPO / "tests" / "data" / "mgnifam_all_seqs_concat.fa"
# UniProtKB/Swiss-Prot amino-acid composition (percent)
COMPOSITION = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27,
    "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08,
    "Y": 2.92, "V": 6.87,
}  # fmt: skip
# stage -> (rules whose jobs it runs, output folders under the atlas outdir), in DAG order; each stage runs
# snakemake on its own targets (--until/--omit-from cannot stop at rules behind a checkpoint on a first run)
STAGES = {
    "split": (["split_drop"], ["chunks"]),
    "fold": (["fold_chunk"], ["predictions"]),
    "novelty": (["reference_db", "novelty_search", "novelty_chunk"], ["reference", "novelty"]),
    "index": (["drop_lookup", "drop_outcomes", "atlas_index"], ["atlas"]),
    "report": (["report"], ["report"]),
}


def stage_targets(stage: str, outdir: Path, drops: list[Path]) -> list[str]:
    """The files (or target rule) that make one stage, given the earlier stages are done."""
    import duckdb

    from atlas.preflight import predictions_key

    manifests = [outdir / "chunks" / path.stem / "manifest.parquet" for path in drops]
    if stage == "split":
        return [str(path) for path in manifests]
    if stage == "fold":
        targets = []
        for manifest in manifests:
            sql = f"SELECT DISTINCT chunk FROM read_parquet('{manifest}') WHERE status = 'queued'"
            chunks = duckdb.connect().execute(sql).fetchall()
            folder = outdir / "predictions" / predictions_key("tiny", None) / manifest.parent.name
            targets += [str(folder / f"{chunk}.parquet") for (chunk,) in chunks]
        return targets
    if stage == "novelty":
        return ["folded"]
    if stage == "index":
        return [str(outdir / "atlas" / "staged" / "index.parquet")]
    return ["all"]


def real_lengths() -> np.ndarray:
    lengths, current = [], 0
    with open(REAL_LENGTHS) as handle:
        for line in handle:
            if line.startswith(">"):
                if current:
                    lengths.append(current)
                current = 0
            else:
                current += len(line.strip())
    lengths.append(current)
    return np.array(lengths)


def generate(directory: Path, n: int, seed: int) -> tuple[list[Path], int]:
    """Two drops of MGnify-like records; returns their paths and the number of residues written."""
    rng = np.random.default_rng(seed)
    pool_lengths = real_lengths()
    letters = np.frombuffer("".join(COMPOSITION).encode(), dtype=np.uint8)
    weights = np.array(list(COMPOSITION.values()))
    weights /= weights.sum()
    directory.mkdir(parents=True, exist_ok=True)
    first_count = int(n * 0.8)
    remembered: list[bytes] = []  # drop 1 sequences that drop 2 repeats
    residues_total = 0
    paths = []
    for drop, count in (("drop1", first_count), ("drop2", n - first_count)):
        path = directory / f"{drop}.fasta"
        paths.append(path)
        written = 0
        with open(path, "wb") as handle:
            while written < count:
                batch = min(100_000, count - written)
                # real lengths with +-10% jitter, so the distribution is MGnify's, not 1,063 values
                lengths = (rng.choice(pool_lengths, batch) * rng.uniform(0.9, 1.1, batch)).astype(int)
                lengths = np.clip(lengths, 16, 3000)
                residues = letters[rng.choice(len(letters), int(lengths.sum()), p=weights)].tobytes()
                out, start = [], 0
                for i, length in enumerate(lengths.tolist()):
                    sequence = residues[start : start + length]
                    start += length
                    roll = rng.random()
                    if drop == "drop2" and roll < 1 / 3 and remembered:
                        sequence = remembered[int(rng.integers(len(remembered)))]
                    elif roll > 0.95 and out:
                        sequence = out[-1].split(b"\n")[1]  # a repeat inside the drop
                    elif drop == "drop1" and len(remembered) < 200_000 and roll < 0.05:
                        remembered.append(sequence)
                    residues_total += len(sequence)
                    out.append(b">MGYP%012d_%s FL=1\n%s" % (written + i, drop.encode(), sequence))
                handle.write(b"\n".join(out) + b"\n")
                written += batch
    return paths, residues_total


def folder_bytes(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths if p.exists() for f in p.rglob("*") if f.is_file())


def benchmark_rows(outdir: Path, rules: list[str]) -> list[dict]:
    """Snakemake benchmark rows of a stage's jobs (benchmarks/{rule-ish name}...)."""
    rows = []
    for path in (outdir / "benchmarks").rglob("*.tsv"):
        relative = path.relative_to(outdir / "benchmarks").as_posix()
        if any(relative.startswith(_benchmark_prefix(rule)) for rule in rules):
            with open(path) as handle:
                rows.extend(csv.DictReader(handle, delimiter="\t"))
    return rows


def _benchmark_prefix(rule: str) -> str:
    return {
        "split_drop": "split/",
        "fold_chunk": "fold/",
        "novelty_search": "novelty/",
        "drop_lookup": "lookup/",
        "reference_db": "reference_db",
        "atlas_index": "atlas_index",
        "report": "report",
    }.get(rule, rule)


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def run(command: list[str], env: dict, log: Path) -> float:
    start = time.perf_counter()
    with open(log, "ab") as handle:
        handle.write(f"$ {' '.join(command)}\n".encode())
        handle.flush()
        subprocess.run(command, check=True, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True, help="sequences over both drops")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference", default="", help="novelty reference FASTA or MMseqs2 db (empty: none)")
    parser.add_argument("--chunk-residues", type=int, default=None, help="override config chunk_residues")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    directory = args.outdir.resolve()
    atlas_outdir = directory / "atlas"
    log = directory / "scale.log"
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    drops, residues = generate(directory / "input", args.n, args.seed)
    generate_s = time.perf_counter() - start
    config = {
        "drops": [str(path) for path in drops],
        "outdir": str(atlas_outdir),
        "model": "tiny",
        "device": "cpu",
        "fold_threads": 1,
        "novelty": {"reference": args.reference},
    }
    if args.chunk_residues:
        config["chunk_residues"] = args.chunk_residues
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(STANDIN), os.environ.get("PYTHONPATH")])),
    }
    snakemake = [
        sys.executable,
        "-m",
        "snakemake",
        "--configfile",
        str(config_path),
        "--cores",
        str(args.cores),
    ]

    figures: dict = {"n": args.n, "residues": residues, "generate_s": round(generate_s, 1), "stages": {}}
    for stage, (rules, folders) in STAGES.items():
        if stage == "novelty" and not args.reference:
            continue
        wall = run([*snakemake, *stage_targets(stage, atlas_outdir, drops)], env, log)
        rows = benchmark_rows(atlas_outdir, rules)
        figures["stages"][stage] = {
            "wall_s": round(wall, 1),
            "cpu_s": round(sum(_float(row.get("cpu_time")) for row in rows), 1),
            "peak_rss_mb": round(max((_float(row.get("max_rss")) for row in rows), default=0.0), 1),
            "bytes_written": folder_bytes([atlas_outdir / folder for folder in folders]),
            "jobs": len(rows),
        }
        print(stage, figures["stages"][stage], flush=True)
    figures["snakemake_dry_run_s"] = round(run([*snakemake, "--dry-run", "--quiet"], env, log), 1)
    folded = residues_folded(atlas_outdir)
    figures["predictions_bytes_per_residue"] = round(
        figures["stages"]["fold"]["bytes_written"] / max(folded, 1), 2
    )
    one_id = first_atlas_id(atlas_outdir)
    atlas = [sys.executable, "-m", "atlas"]
    if one_id is not None:
        # the documented lookup: one row group per drop's lookup file, then one chunk's predictions file
        sql = (
            "SELECT l.drop, l.chunk, f.predictions FROM lookup_by_id l JOIN chunk_files f USING (drop, chunk)"
            f" WHERE l.id = '{one_id}'"
        )
        figures["query_one_id_s"] = round(
            run([*atlas, "query", "--outdir", str(atlas_outdir), sql], env, log), 3
        )
        export_dir = directory / "export"
        shutil.rmtree(export_dir, ignore_errors=True)
        export = [*atlas, "export", "--outdir", str(atlas_outdir), "--where", f"id = '{one_id}'", "--out"]
        figures["export_one_id_s"] = round(run([*export, str(export_dir)], env, log), 3)
    (directory / "scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


def residues_folded(outdir: Path) -> int:
    import duckdb

    pattern = (outdir / "predictions").as_posix() + "/**/*.parquet"
    sql = f"SELECT coalesce(sum(length), 0) FROM read_parquet('{pattern}')"
    return int(duckdb.connect().execute(sql).fetchone()[0])


def first_atlas_id(outdir: Path) -> str | None:
    import duckdb

    path = outdir / "atlas" / "index.parquet"
    if not path.exists():
        return None
    sql = f"SELECT id FROM read_parquet('{path.as_posix()}') ORDER BY id LIMIT 1"
    row = duckdb.connect().execute(sql).fetchone()
    return row[0] if row else None


if __name__ == "__main__":
    sys.exit(main())
