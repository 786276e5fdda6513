"""Split one sequence drop into validated, deduplicated, length-bucketed chunks: the first stage of the DAG.

`atlas split --fasta F --drop NAME --manifest DIR/manifest.parquet [--earlier-manifests M ...] ...` writes

- `DIR/manifest.parquet`: one row per input record, in input order, columns `id, drop, checksum, length,
  status, reason, chunk`. `status` is `queued` (to be folded, in `chunk`), `duplicate` (its sequence is queued
  under another id, earlier in this drop or in an earlier drop: `reason` names that id and drop) or `rejected`
  (`reason` says why: see `atlas.fasta` for the alphabet, plus `repeated id` for the second and later
  records of an id already seen in the drop, wherever the first one went). One status per record, decided in
  this order: `empty id`, the sequence checks of `atlas.fasta.check_sequence`, `repeated id`; then a sequence
  queued by an earlier drop, then one queued earlier in this drop; else queued. Reasons start with a fixed
  phrase (`too long: 1387 residues > max_length 1280`, `duplicate of MGYP000123 in drop drop1`) so that
  they group by their words before the first ':' / digit / quote.
- `DIR/{chunk}.fasta`: the queued sequences, `>{id}` then the sequence on one line. A queued length L goes in
  the first length bucket whose upper bound is >= L; inside a bucket sequences are sorted by length (ties in
  input order) and cut into ceil(residues / chunk_residues) chunks of nearly equal residues. Chunk names are
  `L{bound}-{n}` (`L0064-00000`), zero-padded so that they sort by bucket then by chunk number.

How it scales (MGnify drops reach 10^8 records): one streaming pass validates records and writes them, with
their checksums, to a temporary Parquet file in row groups (memory: one record plus one row group); DuckDB,
which spills to disk, then finds repeated ids, first occurrences of each sequence, duplicates of earlier drops
and the chunk of each queued sequence; the manifest and the chunk FASTAs are streamed out of it in order.
Memory: the reading pass holds one record and one ~4 MB row group; DuckDB is capped by
$ATLAS_SPLIT_MEMORY_LIMIT (e.g. `8GB`), else a quarter of the RAM up to 2 GB, and spills past it, so a job
peaks about 300 MB above the cap whatever the size of the drop. Temporary disk: about the size of the
uncompressed drop. DuckDB uses the CPUs this process may run on (sched_getaffinity: SLURM/cgroup aware).
Everything is written into a temporary directory beside the manifest and moved into place at the end,
the manifest last, so a failed or killed run leaves no manifest (and no chunk FASTAs) behind. Output is
deterministic, byte for byte, for the same input and settings.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from atlas.fasta import STANDARD_RESIDUES, FastaFormatError, check_sequence, iter_raw_records
from atlas.sql import sql_string

MANIFEST_COLUMNS = ("id", "drop", "checksum", "length", "status", "reason", "chunk")
CHUNK_NAME = re.compile(r"^L\d+-\d+\.fasta$")  # what a chunk FASTA of ours looks like (stale-file cleanup)
TEMP_PREFIX = ".split-tmp-"
ROW_GROUP = 1 << 17  # rows per manifest row group and per streamed batch of narrow rows
SEQUENCE_BATCH = 1 << 14  # rows with sequences per pass-1 row group and streamed batch (~4 MB)
PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar for inputs at least this large


class SplitError(Exception):
    """Bad input or settings: reported as one line, without a traceback."""


@dataclass
class SplitSummary:
    records: int = 0
    queued: int = 0
    duplicate: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # kind of reason (e.g. "too long") -> records
    chunks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds


def check_settings(
    min_length: int, max_length: int, length_buckets: Sequence[int], chunk_residues: int
) -> None:
    if min_length < 1:
        raise SplitError(f"min_length must be >= 1, got {min_length}")
    if max_length < min_length:
        raise SplitError(f"max_length ({max_length}) must be >= min_length ({min_length})")
    if not length_buckets:
        raise SplitError("length_buckets is empty: give at least one upper bound")
    if any(bound < 1 for bound in length_buckets):
        raise SplitError(f"length_buckets must be positive, got {list(length_buckets)}")
    if any(a >= b for a, b in zip(length_buckets, length_buckets[1:], strict=False)):
        raise SplitError(f"length_buckets must be strictly ascending, got {list(length_buckets)}")
    if length_buckets[-1] < max_length:
        raise SplitError(
            f"the last length bucket ({length_buckets[-1]}) must be >= max_length ({max_length}), "
            "or the longest accepted sequences would have no bucket"
        )
    if chunk_residues < 1:
        raise SplitError(f"chunk_residues must be >= 1, got {chunk_residues}")


def split_drop(
    fasta: str | Path,
    drop: str,
    manifest: str | Path,
    earlier_manifests: Iterable[str | Path] = (),
    min_length: int = 16,
    max_length: int = 1280,
    length_buckets: Sequence[int] = (64, 128, 256, 384, 512, 768, 1024, 1280),
    chunk_residues: int = 500_000,
    progress: bool | None = None,
    memory_limit: str | None = None,
) -> SplitSummary:
    """Validate, deduplicate and chunk one drop (module docstring). Raises SplitError or FastaFormatError
    for bad input, after removing every output of this drop. `progress`: None shows a bar for large inputs."""
    start = time.monotonic()
    fasta, manifest = Path(fasta), Path(manifest)
    out_dir = manifest.parent
    length_buckets = [int(bound) for bound in length_buckets]
    earlier = [Path(path) for path in earlier_manifests if str(path)]
    # Settings and earlier manifests first: a mistake there touches nothing (not even an old manifest).
    check_settings(min_length, max_length, length_buckets, chunk_residues)
    if not drop:
        raise SplitError("the drop name is empty")
    for path in earlier:
        if path.absolute() == manifest.absolute():
            raise SplitError(f"{path}: the manifest being written cannot be one of the earlier manifests")
        _check_earlier(path)
    temp: Path | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(TEMP_PREFIX + "*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir))
        records = temp / "records.parquet"
        summary = SplitSummary()
        summary.records = _read_drop(fasta, records, min_length, max_length, progress)
        summary.stages["read"] = time.monotonic() - start
        chunk_dir = temp / "chunks"
        chunk_dir.mkdir()
        _dedupe_and_chunk(
            records,
            drop,
            earlier,
            length_buckets,
            chunk_residues,
            temp,
            temp / "manifest.parquet",
            chunk_dir,
            summary,
            memory_limit,
        )
        _install(temp / "manifest.parquet", chunk_dir, manifest, keep=fasta)
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        _remove_outputs(manifest, keep=fasta)
        raise
    shutil.rmtree(temp, ignore_errors=True)
    summary.seconds = time.monotonic() - start
    return summary


def _remove_outputs(manifest: Path, keep: Path | None = None) -> None:
    """The manifest and the chunk FASTAs beside it (files named like our chunks; never `keep`, the input)."""
    manifest.unlink(missing_ok=True)
    if manifest.parent.is_dir():
        for path in manifest.parent.iterdir():
            if CHUNK_NAME.match(path.name) and not (keep is not None and path.resolve() == keep.resolve()):
                path.unlink(missing_ok=True)


def _install(new_manifest: Path, chunk_dir: Path, manifest: Path, keep: Path) -> None:
    """Old manifest out first (an interrupted install leaves none), stale chunks out, new chunks in, and the
    manifest last."""
    _remove_outputs(manifest, keep=keep)
    for path in sorted(chunk_dir.iterdir()):
        os.replace(path, manifest.parent / path.name)
    with open(new_manifest, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(new_manifest, manifest)


def _read_drop(fasta: Path, records: Path, min_length: int, max_length: int, progress: bool | None) -> int:
    """Pass 1: stream, normalise and validate every record into a Parquet file of (line, id, checksum, length,
    reason, sequence); sequence only for records that passed validation. Returns the number of records."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    schema = pa.schema(
        [
            ("line", pa.int64()),
            ("id", pa.string()),
            ("checksum", pa.string()),
            ("length", pa.int64()),
            ("reason", pa.string()),
            ("sequence", pa.binary()),  # binary: no UTF-8 validation (the reader checked ASCII)
        ]
    )
    try:
        size = fasta.stat().st_size
    except OSError:
        size = 0
    show = size >= PROGRESS_MIN_BYTES if progress is None else progress
    bar = tqdm(
        total=size,
        unit="B",
        unit_scale=True,
        desc=f"reading {fasta.name}",
        file=sys.stderr,
        disable=not show,
        mininterval=0.5 if sys.stderr.isatty() else 30,
    )
    md5 = hashlib.md5
    standard = STANDARD_RESIDUES.encode()
    count = 0
    columns: tuple[list, ...] = tuple([] for _ in schema)
    add_line, add_id, add_checksum, add_length, add_reason, add_sequence = (c.append for c in columns)
    with bar, pq.ParquetWriter(records, schema, compression="snappy") as writer:

        def flush() -> None:
            arrays = [pa.array(column, type=kind.type) for column, kind in zip(columns, schema, strict=True)]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=SEQUENCE_BATCH)
            for column in columns:
                column.clear()

        for name, _, sequence, line, _ in iter_raw_records(fasta, progress=bar.update):
            length = len(sequence)
            add_line(line)
            add_id(name)
            add_checksum(md5(sequence).hexdigest())
            add_length(length)
            # Fast path: only standard residues and a length in bounds; else the full check says why.
            if name and min_length <= length <= max_length and not sequence.translate(None, standard):
                add_reason(None)
                add_sequence(sequence)
            else:
                reason = check_sequence(sequence, min_length, max_length) if name else "empty id"
                add_reason(reason)
                add_sequence(None if reason else sequence)
            if len(columns[0]) == SEQUENCE_BATCH:
                count += SEQUENCE_BATCH
                flush()
        count += len(columns[0])
        if columns[0] or not count:
            flush()
    return count


def _check_earlier(path: Path) -> None:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise SplitError(f"earlier manifest {path}: no such file")
    try:
        names = set(pq.read_schema(path).names)
    except Exception as error:  # pyarrow raises several kinds for a file that is not Parquet
        raise SplitError(f"earlier manifest {path}: not a readable Parquet file ({error})") from None
    missing = {"id", "drop", "checksum", "status"} - names
    if missing:
        raise SplitError(f"earlier manifest {path}: missing column(s) {', '.join(sorted(missing))}")


def _default_memory_limit() -> str:
    """DuckDB's memory limit: $ATLAS_SPLIT_MEMORY_LIMIT (e.g. 8GB) if set, else a quarter of the RAM, at most
    2 GB. Past it DuckDB spills to the temporary directory; the process peaks about 300 MB above it."""
    if os.environ.get("ATLAS_SPLIT_MEMORY_LIMIT"):
        return os.environ["ATLAS_SPLIT_MEMORY_LIMIT"]
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "2GB"
    return f"{max(256, min(2048, total // 4 // (1 << 20)))}MB"


def _dedupe_and_chunk(
    records: Path,
    drop: str,
    earlier: list[Path],
    length_buckets: list[int],
    chunk_residues: int,
    temp: Path,
    manifest: Path,
    chunk_dir: Path,
    summary: SplitSummary,
    memory_limit: str | None,
) -> None:
    import duckdb

    clock = time.monotonic()
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET temp_directory = {sql_string(temp / 'spill')}")
        con.execute(f"SET memory_limit = {sql_string(memory_limit or _default_memory_limit())}")
        con.execute(f"SET threads = {threads}")
        con.execute("SET preserve_insertion_order = true")
        con.execute("SET enable_progress_bar = false")

        # Sequences of this drop queued by earlier drops: the first queued row of each checksum, in drop then
        # row order (a checksum is queued once over all drops; the order only matters for hand-made input).
        if earlier:
            sources = " UNION ALL ".join(
                f"SELECT checksum, id, drop, ({index}::BIGINT << 40) + file_row_number AS rank "
                f"FROM read_parquet({sql_string(path)}, file_row_number = true) WHERE status = 'queued'"
                for index, path in enumerate(earlier)
            )
            con.execute(
                f"""CREATE TABLE earlier AS
                SELECT checksum, arg_min(id, rank) AS id, arg_min(drop, rank) AS drop FROM ({sources})
                WHERE checksum IN (
                    SELECT checksum FROM read_parquet({sql_string(records)}) WHERE reason IS NULL
                )
                GROUP BY checksum"""
            )
        else:
            con.execute("CREATE TABLE earlier (checksum VARCHAR, id VARCHAR, drop VARCHAR)")

        # Rejections (validation, then repeated ids), then duplicates (earlier drops, then within this drop).
        # Sequences stay out of these narrow tables: they are joined back only to write the chunk FASTAs.
        con.execute(
            f"""CREATE TABLE classified AS
            WITH ids AS (
                SELECT id, min(line) AS first_line FROM read_parquet({sql_string(records)}) GROUP BY id
            ),
            checked AS (
                SELECT r.line, r.id, r.checksum, r.length,
                    coalesce(r.reason, CASE WHEN r.line <> i.first_line
                        THEN 'repeated id: first occurrence at line ' || i.first_line END) AS reason
                FROM read_parquet({sql_string(records)}) r JOIN ids i USING (id)
            ),
            owners AS (  -- the first record of each sequence that passed the checks
                SELECT checksum, min(line) AS owner_line, arg_min(id, line) AS owner_id
                FROM checked WHERE reason IS NULL GROUP BY checksum
            )
            SELECT c.line, c.id, c.checksum, c.length,
                CASE WHEN c.reason IS NOT NULL THEN 'rejected'
                     WHEN e.checksum IS NOT NULL OR o.owner_line <> c.line THEN 'duplicate'
                     ELSE 'queued' END AS status,
                CASE WHEN c.reason IS NOT NULL THEN c.reason
                     WHEN e.checksum IS NOT NULL THEN 'duplicate of ' || e.id || ' in drop ' || e.drop
                     WHEN o.owner_line <> c.line THEN 'duplicate of ' || o.owner_id || ' in drop ' || $drop
                     END AS reason,
                CASE WHEN c.reason IS NOT NULL THEN regexp_replace(
                         regexp_extract(c.reason, '^[a-z ]*[a-z]'), 'characters$', 'character')
                     WHEN e.checksum IS NOT NULL THEN 'of an earlier drop'
                     WHEN o.owner_line <> c.line THEN 'within the drop' END AS kind
            FROM checked c
            LEFT JOIN owners o ON c.reason IS NULL AND o.checksum = c.checksum
            LEFT JOIN earlier e ON c.reason IS NULL AND e.checksum = c.checksum""",
            {"drop": drop},
        )

        # Chunks: per bucket, sorted by (length, line), cut into n nearly equal runs of residues.
        bucket_of = (
            "CASE " + " ".join(f"WHEN length <= {bound} THEN {bound}" for bound in length_buckets) + " END"
        )
        con.execute(
            f"""CREATE TABLE buckets AS
            SELECT {bucket_of} AS bound, sum(length)::BIGINT AS residues,
                (sum(length)::BIGINT + {chunk_residues} - 1) // {chunk_residues} AS chunks
            FROM classified WHERE status = 'queued' GROUP BY ALL"""
        )
        most = con.execute("SELECT coalesce(max(chunks), 1) FROM buckets").fetchone()[0]
        bound_width = max(4, len(str(length_buckets[-1])))
        chunk_width = max(5, len(str(most - 1)))
        con.execute(
            f"""CREATE TABLE assigned AS
            SELECT q.line, q.length, q.bound,
                'L' || lpad(q.bound::VARCHAR, {bound_width}, '0') || '-' || lpad(((
                    (sum(q.length) OVER (PARTITION BY q.bound ORDER BY q.length, q.line
                        ROWS UNBOUNDED PRECEDING) - q.length)::BIGINT * b.chunks) // b.residues)::VARCHAR,
                    {chunk_width}, '0') AS chunk
            FROM (SELECT line, length, {bucket_of} AS bound FROM classified WHERE status = 'queued') q
            JOIN buckets b USING (bound)"""
        )

        summary.stages["dedupe"] = time.monotonic() - clock
        clock = time.monotonic()
        _write_manifest(
            con.sql(
                f"""SELECT c.id, {sql_string(drop)} AS drop, c.checksum, c.length, c.status, c.reason,
                    a.chunk FROM classified c LEFT JOIN assigned a USING (line) ORDER BY c.line"""
            ),
            manifest,
        )
        summary.stages["manifest"] = time.monotonic() - clock
        clock = time.monotonic()
        summary.chunks = _write_chunks(
            con.sql(
                f"""SELECT a.chunk, encode('>' || r.id || chr(10)) || r.sequence || encode(chr(10)) AS text
                FROM assigned a JOIN read_parquet({sql_string(records)}) r USING (line)
                ORDER BY a.bound, a.length, a.line"""
            ),
            chunk_dir,
        )
        summary.stages["chunks"] = time.monotonic() - clock
        for status, kind, count in con.execute(
            "SELECT status, kind, count(*) FROM classified WHERE status <> 'queued' GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            setattr(summary, status, getattr(summary, status) + count)
            summary.reasons[f"{status}: {kind}"] = count
        summary.queued = summary.records - summary.duplicate - summary.rejected
    finally:
        con.close()


def _arrow_reader(relation, rows: int = ROW_GROUP):
    """Record batches of a DuckDB relation, streamed (newer duckdb names it to_arrow_reader)."""
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(rows)
    return relation.fetch_arrow_reader(rows)


def _write_manifest(result, manifest: Path) -> None:
    """Stream the ordered manifest rows into Parquet, row groups of exactly ROW_GROUP rows (deterministic)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from atlas.tables import MANIFEST

    pending = None
    with pq.ParquetWriter(manifest, MANIFEST, compression="zstd") as writer:
        for batch in _arrow_reader(result):
            table = pa.Table.from_batches([batch]).cast(MANIFEST)
            pending = table if pending is None else pa.concat_tables([pending, table])
            while pending.num_rows >= ROW_GROUP:
                writer.write_table(pending.slice(0, ROW_GROUP).combine_chunks(), row_group_size=ROW_GROUP)
                pending = pending.slice(ROW_GROUP)
        if pending is not None and pending.num_rows:
            writer.write_table(pending.combine_chunks(), row_group_size=ROW_GROUP)


def _write_chunks(result, chunk_dir: Path) -> list[str]:
    """Stream (chunk, FASTA text of one record) rows, in chunk order, into one FASTA file per chunk. The rows
    of one chunk in a batch are one slice of the Arrow data buffer: written without a Python loop per row."""
    import pyarrow as pa

    chunks: list[str] = []
    handle = None
    try:
        for batch in _arrow_reader(result, SEQUENCE_BATCH):
            names = batch.column(0).to_pylist()  # sorted: chunk names sort in chunk order
            texts = batch.column(1)
            if texts.null_count:
                raise RuntimeError("a queued record has no sequence")  # cannot happen: queued rows have one
            _, offsets, data = texts.buffers()
            wide = pa.types.is_large_binary(texts.type) or pa.types.is_large_string(texts.type)
            offsets = memoryview(offsets).cast("q" if wide else "i")[texts.offset :]
            start = 0
            while start < len(names):
                name = names[start]
                end = bisect.bisect_right(names, name, start)
                if not chunks or chunks[-1] != name:
                    if handle is not None:
                        handle.close()
                    chunks.append(name)
                    handle = open(chunk_dir / f"{name}.fasta", "wb")  # noqa: SIM115
                handle.write(memoryview(data)[offsets[start] : offsets[end]])
                start = end
    finally:
        if handle is not None:
            handle.close()
    return chunks


def format_summary(drop: str, fasta: Path, summary: SplitSummary) -> str:
    lines = [
        f"split {drop}: {summary.records} records read from {fasta} in {summary.seconds:.1f} s: "
        f"{summary.queued} queued, {summary.duplicate} duplicate, {summary.rejected} rejected"
    ]
    lines += [f"  {kind}: {count}" for kind, count in summary.reasons.items()]
    per_bucket: dict[str, int] = {}
    for name in summary.chunks:
        bucket = name.split("-")[0]
        per_bucket[bucket] = per_bucket.get(bucket, 0) + 1
    buckets = ", ".join(f"{bucket} {count}" for bucket, count in per_bucket.items())
    lines.append(f"  {len(summary.chunks)} chunks written" + (f" ({buckets})" if buckets else ""))
    if summary.stages:
        lines.append("  seconds: " + ", ".join(f"{stage} {sec:.1f}" for stage, sec in summary.stages.items()))
    if not summary.records:
        lines.append(f"  warning: {fasta} holds no FASTA record")
    elif not summary.queued:
        lines.append("  warning: nothing to fold in this drop")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atlas split",
        description="Split a sequence drop into validated, deduplicated, length-bucketed chunk FASTAs.",
    )
    parser.add_argument("--fasta", required=True, type=Path, help="the drop: protein FASTA, plain or gzip")
    parser.add_argument("--drop", required=True, help="drop name, stored in the manifest")
    parser.add_argument(
        "--manifest", required=True, type=Path, help="manifest.parquet to write; chunk FASTAs go beside it"
    )
    parser.add_argument(
        "--earlier-manifests",
        nargs="*",
        default=[],
        metavar="PARQUET",
        help="manifests of earlier drops, in arrival order: their queued sequences are not queued again",
    )
    parser.add_argument("--min-length", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1280)
    parser.add_argument(
        "--length-buckets", type=int, nargs="+", default=[64, 128, 256, 384, 512, 768, 1024, 1280]
    )
    parser.add_argument("--chunk-residues", type=int, default=500_000)
    return parser


def _terminate(signum, frame):  # SIGTERM (Snakemake, SLURM) cleans up like Ctrl-C
    raise SystemExit(128 + signum)


def split_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        summary = split_drop(
            args.fasta,
            args.drop,
            args.manifest,
            args.earlier_manifests,
            args.min_length,
            args.max_length,
            args.length_buckets,
            args.chunk_residues,
        )
    except (SplitError, FastaFormatError, OSError) as error:  # OSError: unwritable output, disk full
        print(f"atlas split: error: {error}", file=sys.stderr)
        return 1
    print(format_summary(args.drop, args.fasta, summary), file=sys.stderr)
    return 0
