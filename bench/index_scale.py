"""The index and the lookups at 10^7 rows (issue 12, item 4), without folding 10^7 sequences.

    .venv/bin/python bench/index_scale.py --n 1000000 --outdir /tmp/index1m      # a quick look
    .venv/bin/python bench/index_scale.py --n 10000000 --outdir /data/index10m   # the figure of issue 12

bench/scale.py runs the whole DAG; its fold stage (real fold code around a stand-in network) costs ~20 ms of
CPU per sequence here, so 10^7 sequences would take days on 2 cores. The index, the lookups and the exports
read only what the fold step leaves, so this bench writes that directly, in the layout the workflow makes:

- templates: `atlas fold` (real code, bench/standin for the network, Foldcomp structures) folds K sequences
  whose lengths are MGnify's (tests/data), clipped to --max-template-length to bound the disk this needs
  (~1.1 KB per row at 64; real MGnify lengths would need ~5 KB per row, 50 GB at 10^7);
- `--drops` drops of N/drops records each (3% duplicates of an earlier record), their manifests, and
  predictions and novelty files per chunk, with the chunk count the split would make for MGnify lengths
  (atlas.chunking.chunk_size with the schema's chunk_residues, length buckets and max_chunks_per_drop),
  each row a template's prediction under a new id and checksum, written with the fold step's Parquet
  settings (zstd, FINAL_ROW_GROUP rows per row group, statistics on the scalar columns);
- then `atlas index` over the first drops-1 drops (the lookups are made on the way: the drop_lookup rule's
  work), again with the lookups present (the atlas_index rule's work), and again after adding the last drop;
  one-id `atlas query` and `atlas export` (--id, and --where for comparison) on the final atlas.

Printed and written to DIR/index_scale.json: rows, files, bytes on disk (structure columns apart), and per
step wall seconds, CPU seconds, peak RSS and bytes read (rchar of /proc/PID/io, which counts what DuckDB
reads through the page cache too): the bytes an index build reads beside the bytes of the structure columns
it must not read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from scale import COMPOSITION, STANDIN, real_lengths  # noqa: E402

from atlas.chunking import chunk_size  # noqa: E402
from atlas.config import schema_defaults  # noqa: E402
from atlas.fold import FINAL_ROW_GROUP, STATISTICS_COLUMNS  # noqa: E402
from atlas.preflight import predictions_key  # noqa: E402
from atlas.tables import MANIFEST, NOVELTY, PREDICTIONS  # noqa: E402

# Run a CLI and report its own resource use: rchar is only readable from inside the process.
MEASURED = """
import resource, sys, time
from atlas.cli import main
start = time.perf_counter()
try:
    code = main(sys.argv[1:])
finally:
    io = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # VmHWM, not ru_maxrss: Linux keeps the parent's ru_maxrss across fork and exec
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    print("MEASURED", time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
          int(status["VmHWM"].split()[0]), int(io["rchar"]), file=sys.stderr)
sys.exit(code)
"""


def measured(arguments: list[str], log: Path) -> dict:
    """Wall, CPU, peak RSS and bytes read of `atlas ARGUMENTS` in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    with open(log, "a") as handle:
        done = subprocess.run(
            [sys.executable, "-c", MEASURED, *arguments], env=env, stderr=subprocess.PIPE, text=True
        )
        handle.write(done.stderr)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"atlas {' '.join(arguments)} failed (rc {done.returncode}); see {log}")
    line = next(line for line in done.stderr.splitlines() if line.startswith("MEASURED"))
    _, inside, cpu, rss_kb, rchar = line.split()
    return {
        "wall_s": round(wall, 3),
        "inside_s": round(float(inside), 3),
        "cpu_s": round(float(cpu), 2),
        "peak_rss_mb": round(int(rss_kb) / 1024, 1),
        "bytes_read": int(rchar),
    }


def fold_templates(directory: Path, count: int, max_length: int, seed: int) -> pa.Table:
    """`count` predictions made by the real fold code with the stand-in network (Foldcomp structures)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.choice(real_lengths(), count), 20, max_length)
    letters = np.array(list(COMPOSITION))
    weights = np.array(list(COMPOSITION.values()))
    fasta = directory / "templates.fasta"
    with open(fasta, "w") as handle:
        for number, length in enumerate(lengths):
            residues = "".join(rng.choice(letters, length, p=weights / weights.sum()))
            handle.write(f">template{number}\n{residues}\n")
    output = directory / "templates.parquet"
    env = dict(os.environ, PYTHONPATH=f"{STANDIN}{os.pathsep}{REPO}")
    subprocess.run(
        [sys.executable, "-m", "atlas", "fold", f"--fasta={fasta}", f"--output={output}", "--drop=t",
         "--chunk=t", "--model=tiny", "--device=cpu", "--threads=1"],
        env=env, check=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    table = pq.read_table(output)
    if table.filter(pa.compute.equal(table["status"], "ok")).num_rows != count:
        raise SystemExit("a template did not fold")
    return table


def hex_strings(rng: np.random.Generator, count: int, digits: int) -> pa.Array:
    alphabet = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    data = alphabet[rng.integers(0, 16, count * digits)].tobytes()
    offsets = np.arange(0, (count + 1) * digits, digits, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))


def write_drop(
    outdir: Path, model_key: str, drop: str, first_id: int, count: int, templates: pa.Table, seed: int
) -> dict:
    """A drop's manifest, predictions and novelty files; returns rows, files and bytes written."""
    rng = np.random.default_rng(seed)
    defaults = schema_defaults()
    mgnify_lengths = rng.choice(real_lengths(), count)
    duplicate = rng.random(count) < 0.03
    queued = int((~duplicate).sum())
    residues_per_chunk = chunk_size(
        defaults["chunk_residues"], int(mgnify_lengths[~duplicate].sum()), len(defaults["length_buckets"]),
        defaults["max_chunks_per_drop"],
    )  # fmt: skip
    # the split's layout: queued records by length bucket, in input order inside a bucket, cut into chunks
    # of residues_per_chunk; so a chunk's ids are spread over the whole drop, as in production
    buckets = np.array(defaults["length_buckets"])
    rows = np.flatnonzero(~duplicate)
    bucket = np.minimum(np.searchsorted(buckets, mgnify_lengths[rows]), len(buckets) - 1)
    rows = rows[np.argsort(bucket, kind="stable")]
    bucket = np.sort(bucket, kind="stable")
    chunk_number = np.zeros(len(rows), dtype=np.int64)
    names: list[str] = []
    for value in np.unique(bucket):
        inside = np.flatnonzero(bucket == value)
        cumulative = np.cumsum(mgnify_lengths[rows[inside]])
        local = (cumulative - 1) // residues_per_chunk
        chunk_number[inside] = len(names) + local
        names += [f"L{buckets[value]:04d}-{number:05d}-{seed:04x}{len(names) + number:06x}"
                  for number in range(int(local.max()) + 1)]  # fmt: skip
    pick = rng.integers(0, templates.num_rows, count)
    ids = pa.array([f"MGYP{first_id + number:012d}" for number in range(count)], pa.string())
    checksums = hex_strings(rng, count, 32)
    chunk_of = np.full(count, None, dtype=object)
    chunk_of[rows] = np.array(names, dtype=object)[chunk_number]
    template_length = templates["length"].to_numpy()
    manifest = pa.table(
        {
            "id": ids,
            "drop": pa.array([drop] * count, pa.string()),
            "checksum": checksums,
            "crc64": pa.compute.utf8_upper(hex_strings(rng, count, 16)),
            "length": pa.array(template_length[pick], pa.int64()),
            "status": pa.array(np.where(duplicate, "duplicate", "queued"), pa.string()),
            "reason": pa.array(np.where(duplicate, "duplicate of an earlier record", ""), pa.string()),
            "chunk": pa.array(chunk_of, pa.string()),
            "description": pa.array([""] * count, pa.string()),
            "is_fragment": pa.nulls(count, pa.bool_()),
            "header_fields": pa.array([[]] * count, MANIFEST.field("header_fields").type),
        },
        schema=MANIFEST,
    )
    manifest_path = outdir / "chunks" / drop / "manifest.parquet"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(manifest, manifest_path, compression="zstd")
    written = {"rows": count, "queued": queued, "chunks": len(names), "bytes": manifest_path.stat().st_size}
    predictions_dir = outdir / "predictions" / model_key / drop
    novelty_dir = outdir / "novelty" / drop
    predictions_dir.mkdir(parents=True, exist_ok=True)
    novelty_dir.mkdir(parents=True, exist_ok=True)
    bounds = np.searchsorted(chunk_number, np.arange(len(names) + 1))
    structure_bytes = 0
    for number, name in enumerate(names):
        members = np.sort(rows[bounds[number] : bounds[number + 1]])
        table = templates.take(pa.array(pick[members]))
        for column, values in (
            ("id", ids.take(pa.array(members))),
            ("checksum", checksums.take(pa.array(members))),
            ("drop", pa.array([drop] * len(members), pa.string())),
            ("chunk", pa.array([name] * len(members), pa.string())),
        ):
            table = table.set_column(PREDICTIONS.get_field_index(column), column, values)
        path = predictions_dir / f"{name}.parquet"
        settings = {"compression": "zstd", "write_statistics": STATISTICS_COLUMNS}
        with pq.ParquetWriter(path, PREDICTIONS, **settings) as out:
            out.write_table(table, row_group_size=FINAL_ROW_GROUP)
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            for column in range(metadata.num_columns):
                chunk_meta = metadata.row_group(group).column(column)
                if chunk_meta.path_in_schema in ("structure", "plddt.list.element", "pae"):
                    structure_bytes += chunk_meta.total_compressed_size
        novel = rng.random(len(members)) < 0.5
        novelty = pa.table(
            {
                "checksum": table["checksum"],
                "best_hit": pa.array(np.where(novel, None, "UniRef90_P12345"), pa.string()),
                "identity": pa.array(np.where(novel, np.nan, 0.8)),
                "query_coverage": pa.array(np.where(novel, np.nan, 0.9)),
                "target_coverage": pa.array(np.where(novel, np.nan, 0.9)),
                "evalue": pa.array(np.where(novel, np.nan, 1e-20)),
                "novel": pa.array(novel),
            },
            schema=NOVELTY,
        )
        pq.write_table(novelty, novelty_dir / f"{name}.parquet", compression="zstd")
        written["bytes"] += path.stat().st_size + (novelty_dir / f"{name}.parquet").stat().st_size
    written["structure_column_bytes"] = structure_bytes
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, required=True, help="records over all drops")
    parser.add_argument("--outdir", type=Path, required=True)
    parser.add_argument("--drops", type=int, default=4, help="drops (the last one is added at the end)")
    parser.add_argument("--templates", type=int, default=512)
    parser.add_argument("--max-template-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true", help="keep the data of an earlier run with this --n")
    args = parser.parse_args(argv)
    if args.drops < 2:
        parser.error("--drops must be at least 2 (one is added after the first index)")
    directory = args.outdir.resolve()
    outdir = directory / "results"
    log = directory / "index_scale.log"
    model_key = predictions_key("tiny", None)
    drops = [f"drop{number + 1}" for number in range(args.drops)]
    per_drop = args.n // args.drops
    generated = directory / "generated.json"
    if args.reuse and generated.exists() and json.loads(generated.read_text())["n"] == per_drop * args.drops:
        figures = json.loads(generated.read_text())  # the same data: only the index steps run again
        shutil.rmtree(outdir / "atlas", ignore_errors=True)
    else:
        if directory.exists():
            shutil.rmtree(directory)
        outdir.mkdir(parents=True)
        print(f"folding {args.templates} templates (stand-in network) ...", file=sys.stderr)
        templates = fold_templates(directory, args.templates, args.max_template_length, args.seed)
        figures = {"n": per_drop * args.drops, "drops": {}, "steps": {}}
        started = time.perf_counter()
        for number, drop in enumerate(drops):
            print(f"writing {drop} ({per_drop} records) ...", file=sys.stderr)
            figures["drops"][drop] = write_drop(
                outdir, model_key, drop, number * per_drop, per_drop, templates, args.seed + number + 1
            )
        figures["generate_s"] = round(time.perf_counter() - started, 1)
        figures["files"] = sum(1 for path in outdir.rglob("*.parquet"))
        figures["bytes_on_disk"] = sum(path.stat().st_size for path in outdir.rglob("*.parquet"))
        generated.write_text(json.dumps(figures))
    index = ["index", f"--outdir={outdir}", f"--predictions-dir=predictions/{model_key}", "--novelty"]
    steps = figures["steps"]
    first = drops[:-1]
    print("index (lookups made on the way), index, index after adding a drop ...", file=sys.stderr)
    steps["index_with_lookups"] = measured([*index, "--drops", *first], log)
    steps["index"] = measured([*index, "--drops", *first], log)
    for path in (outdir / "atlas" / "lookup").glob(f"{drops[-1]}.*"):
        path.unlink()
    steps["index_after_new_drop_with_its_lookups"] = measured([*index, "--drops", *drops], log)
    steps["index_after_new_drop"] = measured([*index, "--drops", *drops], log)
    written = figures["drops"].values()
    figures["structure_column_bytes"] = sum(drop["structure_column_bytes"] for drop in written)
    with pq.ParquetFile(outdir / "atlas" / "index.parquet") as index_file:
        figures["atlas_rows"] = index_file.metadata.num_rows
    # an atlas member from the middle of an early drop (a lookup must not depend on where the id lies)
    index_rows = pq.read_table(outdir / "atlas" / "index.parquet", columns=["id", "drop"])
    early = index_rows.filter(pa.compute.equal(index_rows["drop"], drops[-2]))["id"]
    one_id = early[len(early) // 2].as_py()
    figures["one_id"] = one_id
    # the README's lookup: one row group per drop's lookup file, then the chunk's predictions file
    lookup = (
        "SELECT l.drop, l.chunk, f.predictions FROM lookup_by_id l JOIN chunk_files f USING (drop, chunk)"
        f" WHERE l.id = '{one_id}'"
    )
    for name, arguments in (
        ("query_lookup_one_id", ["query", f"--outdir={outdir}", lookup]),
        ("query_one_id", ["query", f"--outdir={outdir}", f"SELECT * FROM atlas WHERE id = '{one_id}'"]),
        ("export_one_id", ["export", f"--outdir={outdir}", f"--id={one_id}", "--out", str(directory / "e1")]),
        ("export_one_id_by_where", ["export", f"--outdir={outdir}", "--where", f"id = '{one_id}'",
                                    "--out", str(directory / "e2")]),
    ):  # fmt: skip
        try:
            steps[name] = measured(arguments, log)
        except SystemExit as error:
            steps[name] = {"error": str(error)}
    text = json.dumps(figures, indent=2)
    (directory / "index_scale.json").write_text(text + "\n")
    print(text)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"bench process: peak RSS {usage.ru_maxrss / 1024:.0f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
