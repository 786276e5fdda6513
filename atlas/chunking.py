"""Split one sequence drop into validated, deduplicated, length-bucketed chunks: the first stage of the DAG.

`atlas split --fasta F --drop NAME --manifest DIR/manifest.parquet [--earlier-manifests M ...] ...` writes

- `DIR/manifest.parquet`: one row per input record, in input order, columns of `atlas.tables.MANIFEST`:
  `id, drop, checksum (MD5), crc64, length, status, reason, chunk, description, is_fragment, header_fields`.
  `status` is `queued` (to be folded, in `chunk`), `duplicate` (its sequence is queued under another id,
  earlier in this drop or in an earlier drop: `reason` names that id and drop) or `rejected` (`reason` says
  why: see `atlas.fasta` for the alphabet and the nucleotide check, plus `repeated id` for the second and
  later records of an id already seen in the drop, wherever the first one went). One status per record,
  decided in this order: `empty id`, the sequence checks of `atlas.fasta.check_sequence`, `repeated id`;
  then a sequence queued by an earlier drop, then one queued earlier in this drop; else queued. Reasons
  start with a fixed phrase (`too long: 1387 residues > max_length 1280`, `duplicate of MGYP000123 in drop
  drop1`) so that they group by their words before the first ':' / digit / quote. The `chunk` column is
  the authoritative chunk list: every queued row names its chunk, and the chunks are exactly those names.
- `DIR/{chunk}.fasta`: the queued sequences, `>{id}` then the sequence on one line. A queued length L goes
  in the first length bucket whose upper bound is >= L; inside a bucket sequences stay in input order and
  the bucket is cut every `chunk_residues` residues (a record goes to chunk floor(residues of the bucket
  before it / chunk_residues)). The fold sorts each chunk by length itself, so no global sort is needed.
  With `--slot-dir DIR --slots N` (remote storage, where the workflow must name every output in advance) the
  same files go to `DIR/{slot}.fasta` instead, slot i holding the i-th chunk by name (atlas.chunkstore).

Chunk names are keyed by content: `L{bound}-{n}-{hash}` (`L0064-00000-3f9a0c2d1e`), with the bound and
chunk number zero-padded (names sort by bucket, then chunk number) and `hash` the first 10 of 16 hex digits
of the XOR over the chunk's records of CRC64(id) rotated left by one bit XOR CRC64(sequence): a hash of the
chunk's (id, sequence) set, computed without a pass of its own. So the same content always gets
the same name and different content a new name: a rerun on the same drop (a `touch`, a rerun split) leaves
every chunk FASTA untouched (same bytes, same mtime: the new file is written aside, compared and dropped
when identical), and a chunk whose content changed becomes a new fold job under a new name, never
replacing the predictions of the old content. Chunk FASTAs that the new manifest does not name are removed.

How it scales (MGnify drops reach 10^8 records, 10^5 files): the file is cut into ~16 MB blocks of whole
records (a plain file by one positioned read per block, cut without a copy, atlas.fasta.iter_plain_blocks;
gzip through ISA-L); worker threads (one per CPU this process may run on: sched_getaffinity, so SLURM/cgroup
aware; the compiled code releases the GIL) parse the blocks in parallel, each in one compiled pass
(atlas.blockparse: records, normalisation, the alphabet and nucleotide checks, CRC64 of ids and sequences, MD5
of 16 sequences at once, and a flag for the NUL, CR and non-ASCII bytes that atlas.fasta.check_block_text then
names), then over whole arrays (header metadata with each distinct description parsed once), with a call per
record only for the few records that need a reason. Each block becomes one part: an uncompressed Arrow IPC
file (memory-mapped when read back) with each record's length, MD5 digest (16 bytes; the manifest's hex
columns are made in the write pass), header metadata, a 64-bit hash of its id and its share of its chunk's
name (the sequence's CRC64 is undone from the two), and where its sequence lines lie in the block (and their
width, when they can be copied as they are); no sequences (the write pass cuts the queued ones again from the
text: a plain file is read again where it is, and must not change meanwhile (its inode, size and mtime are
checked at the end, and each sequence's length as it is cut); gzip input and pipes are copied, as text, into
the temporary directory during the first pass). A record longer than max_length is streamed through its
checksums by the reader and never held whole. As the parts come in, this thread adds their hashes to bitmaps
of a fixed size (atlas.seen: 64 MB for 1 GB of text, at most 128 MB; the hash of a sequence is the first 8
bytes of its MD5) that flag the ids and sequences that may be seen twice; only those records (a few percent of
a drop) go to DuckDB, which spills to disk and finds the exceptions among them: repeated ids, later copies of
a sequence and duplicates of earlier drops (exact strings decide; earlier drops are joined out of core on the
hashes of the records that passed, never loaded into Python). Every other record is queued or rejected by its
own checks, so the chunks are assigned in order, part by part, with a running total of residues per bucket
(numpy; state per chunk only): a first pass XORs each chunk's members into its name, a second one, beside the
parts, makes the manifest's rows in this thread (a thread of its own encodes them) while the workers write the
chunk FASTAs (each part's records of a chunk go to a byte offset known from the parts before it, so the files
are the same as one writer would make). Memory: a worker holds one block and its arrays, DuckDB is capped by
$ATLAS_SPLIT_MEMORY_LIMIT (e.g. `2GB`), else 320 MB, and spills past it; measured on a 1 GB drop with 2
workers: 550-610 MiB for the whole process (about 910 MiB when an earlier drop holds every sequence), whatever
the size of the drop or the number of earlier drops. Temporary disk: about 0.35 times the size of the
uncompressed drop (1.35 for gzip input and pipes, with the text copy). Everything is written into a temporary
directory beside the manifest and moved into place at the end, chunk FASTAs first and the manifest last; a
failed or killed run leaves no manifest behind (chunk FASTAs, being named by content, are left for a later run
to reuse or remove). Output is deterministic, byte for byte, for the same input and settings."""

from __future__ import annotations

import argparse
import filecmp
import gc
import math
import os
import re
import resource
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atlas.chunkstore import install_slots
from atlas.config import schema_defaults
from atlas.fasta import (
    BLOCK_SIZE,
    NUCLEOTIDE_MIN_LENGTH,
    NUCLEOTIDE_SHARE,
    NUCLEOTIDE_WINDOW,
    Block,
    FastaFormatError,
    SkippedRecord,
    check_block_text,
    check_sequence,
    crc64_hex,
    header_metadata,
    iter_blocks,
    iter_plain_blocks,
)
from atlas.sql import sql_string

if TYPE_CHECKING:
    from atlas.seen import SeenTwice  # imported where used: numba loads in a thread of its own (split_drop)

# What a chunk FASTA of ours looks like (stale-file cleanup); the hash-less form is the older naming.
CHUNK_NAME = re.compile(r"^L\d+-\d+(-[0-9a-f]+)?\.fasta$")
CHUNK_HASH_DIGITS = 10
TEMP_PREFIX = ".split-tmp-"
PART_SUFFIX = ".arrow"
# Two 64-bit hashes of each record, made in the workers: CRC64 of the id, and the first 8 bytes of the MD5.
# Bitmaps of them (atlas.seen) flag the few records whose id or sequence may be seen twice, and only those
# go to DuckDB's dedupe (RECORD_COLUMNS and the hashes), where exact strings decide.
HASH_COLUMNS = ["id_hash", "checksum_hash"]
RECORD_COLUMNS = ["line", "id", "checksum", "length", "reason"]
MANIFEST_DICTIONARY = ["drop", "status", "reason", "chunk", "description", "header_fields"]
# The random hex columns: no statistics (a row group's min and max would span them all), and their lengths
# apart from their text (DELTA_LENGTH_BYTE_ARRAY), which zstd then packs faster and smaller than
# length-prefixed values (the two on a 1 GB drop: 0.74 -> 0.46 CPU-s to write, 98 -> 90 MB).
MANIFEST_HEX = ["checksum", "crc64"]
ROW_GROUP = 1 << 17  # rows per streamed batch of (status, reason, chunk)
PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar for inputs at least this large
DEFAULT_MEMORY_LIMIT = "320MB"  # DuckDB's cap: the whole job then stays under 1 GB


_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", np.uint8)  # CRC64 as UniProt writes it
_LOWER_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)  # MD5 as hashlib's hexdigest


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
    kept: int = 0  # chunk FASTAs already on disk with the same content: left untouched
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    chunk_residues: int = 0  # residues per chunk used (chunk_residues, or more under max_chunks)


def check_settings(
    min_length: int,
    max_length: int,
    length_buckets: Sequence[int],
    chunk_residues: int,
    max_chunks: int | None = None,
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
    if max_chunks is not None and max_chunks <= len(length_buckets):
        raise SplitError(
            f"max_chunks_per_drop ({max_chunks}) must be above the number of length buckets "
            f"({len(length_buckets)}): every bucket may need a chunk of its own"
        )


def chunk_size(chunk_residues: int, queued_residues: int, buckets: int, max_chunks: int | None) -> int:
    """Residues per chunk: chunk_residues, raised where needed so the drop makes at most max_chunks chunks
    (each bucket is cut every so many residues, so a drop makes at most residues / size + buckets chunks)."""
    if max_chunks is None:
        return chunk_residues
    return max(chunk_residues, math.ceil(queued_residues / (max_chunks - buckets)))


def split_drop(
    fasta: str | Path,
    drop: str,
    manifest: str | Path,
    earlier_manifests: Iterable[str | Path] = (),
    min_length: int = 16,
    max_length: int = 1280,
    length_buckets: Sequence[int] = (64, 128, 256, 384, 512, 768, 1024, 1280),
    chunk_residues: int = 500_000,
    max_chunks: int | None = None,
    progress: bool | None = None,
    memory_limit: str | None = None,
    workers: int | None = None,
    block_size: int = BLOCK_SIZE,
    slot_dir: str | Path | None = None,
    slots: int = 0,
) -> SplitSummary:
    """Validate, deduplicate and chunk one drop (module docstring). Raises SplitError or FastaFormatError
    for bad input, after removing the manifest of this drop. `progress`: None shows a bar for large inputs;
    `workers`: worker threads that parse the blocks and write the chunk FASTAs (default: the CPUs this
    process may use; 1 does all in the calling thread);
    `slot_dir`: the chunk FASTAs go into `slots` slot files there (atlas.chunkstore), not beside the
    manifest."""
    start = time.monotonic()
    fasta, manifest = Path(fasta), Path(manifest)
    out_dir = manifest.parent
    length_buckets = [int(bound) for bound in length_buckets]
    earlier = [Path(path) for path in earlier_manifests if str(path)]
    # Settings and earlier manifests first: a mistake there touches nothing (not even an old manifest).
    check_settings(min_length, max_length, length_buckets, chunk_residues, max_chunks)
    if not drop:
        raise SplitError("the drop name is empty")
    for path in earlier:
        if path.absolute() == manifest.absolute():
            raise SplitError(f"{path}: the manifest being written cannot be one of the earlier manifests")
        _check_earlier(path)
    with _split_settings():
        # The compiled parser loads (numba, LLVM: ~0.4 s) in a thread of its own while this one sets up;
        # numba looks for no BLAS meanwhile (atlas.compiled.skip_blas_check).
        from atlas.compiled import skip_blas_check

        threading.Thread(target=_load_compiled, args=(skip_blas_check(),), daemon=True).start()
        temp: Path | None = None
        pool = _Workers(workers or _cpus())
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for stale in out_dir.glob(TEMP_PREFIX + "*"):  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
            temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir))
            parts = temp / "parts"
            parts.mkdir()
            summary = SplitSummary()
            show = _show_progress(fasta, progress)
            source, copy, identity = _text_source(fasta, temp)
            hashes = temp / "hashes.parquet" if earlier else None
            first_pass = _read_drop(
                fasta, parts, min_length, max_length, show, pool, block_size, copy, hashes_to=hashes
            )
            summary.records = first_pass.records
            _free_memory()
            summary.stages["read"] = time.monotonic() - start
            chunk_dir = temp / "chunks"
            chunk_dir.mkdir()
            _dedupe_and_chunk(
                parts,
                first_pass,
                drop,
                earlier,
                length_buckets,
                chunk_residues,
                max_chunks,
                temp,
                temp / "manifest.parquet",
                chunk_dir,
                source,
                summary,
                memory_limit,
                pool,
                show,
            )
            pool.close()
            _check_unchanged(fasta, identity)
            clock = time.monotonic()
            summary.kept = _install(
                temp / "manifest.parquet", chunk_dir, manifest, keep=fasta, slots=(slot_dir, slots)
            )
            summary.stages["install"] = time.monotonic() - clock
        except BaseException:
            pool.close()
            if temp is not None:
                shutil.rmtree(temp, ignore_errors=True)
            manifest.unlink(missing_ok=True)
            raise
        shutil.rmtree(temp, ignore_errors=True)
    summary.seconds = time.monotonic() - start
    return summary


def _load_compiled(restore_blas_check: Callable[[], None]) -> None:
    try:
        import pyarrow.compute  # noqa: F401 - imported here too, so that the imports overlap with LLVM's start

        from atlas.blockparse import load

        load()
    finally:
        restore_blas_check()
    import duckdb  # noqa: F401 - for the dedupe, while the first pass runs


@contextmanager
def _split_settings():
    """Process-wide settings for the split's duration, put back after it. glibc's malloc keeps the memory
    that is freed for the next allocations (blocks of the same sizes come and go: handing them back to the
    kernel and faulting them in again cost about 1 CPU-s per GB of input; `_free_memory` hands it back
    between the passes), and the cyclic garbage collector stays off (the split makes few Python objects,
    and no cycles)."""
    libc = _glibc()
    collecting = gc.isenabled()
    gc.disable()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum: allocations of up to a block's size
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _MALLOC_DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _MALLOC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)
        if collecting:
            gc.enable()


def _free_memory() -> None:
    """Hand the memory that malloc keeps (_split_settings) back to the kernel: between the passes, so that
    DuckDB's memory comes on top of what the split uses, not of what it used."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_MALLOC_DEFAULT_THRESHOLD = 128 << 10  # glibc's default for both (once set, they no longer adapt to use)


def _glibc():
    """The C library when it is glibc (it has mallopt and malloc_trim), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc's, absent elsewhere
    except (OSError, AttributeError):
        return None
    return libc


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Workers:
    """The split's worker threads, started on first use and kept for both passes that use them (parsing the
    blocks, writing the chunk FASTAs). Threads, not processes: the compiled code (atlas.blockparse) and
    most of numpy's, Arrow's and the file system's work release the GIL, and threads share the blocks,
    the parts and the imports, where a worker process paid about a second of CPU to start and copied every
    block it was sent."""

    def __init__(self, count: int):
        self.count = count
        self._pool: ThreadPoolExecutor | None = None

    def map(self, function, tasks: Iterable[tuple], parallel: bool = True) -> Iterator:
        """function(*task) for each task, results in order: in the workers when `parallel` and there is more
        than one, else in this thread. At most 2 tasks per worker in flight, so memory stays a few blocks
        per worker whatever the size of the drop."""
        if not parallel or self.count <= 1:
            for task in tasks:
                yield function(*task)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.count, thread_name_prefix="atlas-split")
        pending: deque = deque()
        try:
            for task in tasks:
                pending.append(self._pool.submit(function, *task))
                while len(pending) > 2 * self.count:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _install(
    new_manifest: Path, chunk_dir: Path, manifest: Path, keep: Path, slots: tuple = (None, 0)
) -> int:
    """Chunks in (an identical file already there is kept as it is, mtime included), chunks that the new
    manifest does not name out (never `keep`, the input), the manifest last (kept too when identical).
    With `slots` (a folder and a count), the chunks go into slot files there instead (atlas.chunkstore).
    Returns the number of chunk FASTAs kept."""
    out_dir = manifest.parent
    new = {path.name for path in chunk_dir.iterdir()}
    kept = 0
    slot_dir, slot_count = slots
    if slot_dir is not None:
        if len(new) > slot_count:
            raise SplitError(f"{len(new)} chunks do not fit in {slot_count} slot files (max_chunks_per_drop)")
        install_slots(chunk_dir, Path(slot_dir), slot_count)
        new = set()  # no chunk FASTA beside the manifest
    for name in sorted(new):
        target = out_dir / name
        if target.is_file() and filecmp.cmp(chunk_dir / name, target, shallow=False):
            kept += 1
            continue
        os.replace(chunk_dir / name, target)
    for path in out_dir.iterdir():
        stale = CHUNK_NAME.match(path.name) and path.name not in new
        if stale and not (keep is not None and path.resolve() == keep.resolve()):
            path.unlink(missing_ok=True)
    if manifest.is_file() and filecmp.cmp(new_manifest, manifest, shallow=False):
        return kept
    with open(new_manifest, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(new_manifest, manifest)
    return kept


def _part_schema():
    import pyarrow as pa

    from atlas.tables import MANIFEST

    # The manifest's hex columns are made in the write pass (_write_outputs), from 24 bytes a record where
    # their text took 48: the MD5 digest, and the sequence's CRC64 from `member` and `id_hash`
    # (_crc64_column).
    return pa.schema(
        [
            ("line", pa.int64()),
            MANIFEST.field("id"),
            ("md5", pa.binary(16)),  # of the sequence: the manifest's checksum as bytes
            MANIFEST.field("length"),
            ("reason", pa.string()),  # why the record failed its checks; null: it passed
            MANIFEST.field("description"),
            MANIFEST.field("is_fragment"),
            MANIFEST.field("header_fields"),
            # Where the record's sequence lines start and end in its block (the part's schema metadata says
            # where the block is in the text): the write pass cuts the queued sequences again from there.
            ("body_start", pa.int32()),
            ("body_end", pa.int32()),
            ("line_width", pa.int32()),  # of the sequence lines, when they can be copied as they are; else 0
            ("member", pa.uint64()),  # the record's share of its chunk's name (module docstring)
            ("id_hash", pa.uint64()),
        ]
    )


def _candidate_schema():
    """The dedupe's columns of a record (_write_part_candidates): RECORD_COLUMNS, then HASH_COLUMNS."""
    import pyarrow as pa

    part = _part_schema()
    fields = [
        pa.field("checksum", pa.string()) if name == "checksum" else part.field(name)
        for name in RECORD_COLUMNS
    ]
    return pa.schema(fields + [pa.field(name, pa.uint64()) for name in HASH_COLUMNS])


@dataclass
class _PartCounts:
    """What the first pass adds up from a part as it is parsed (_parse_part): its records, the hashes of
    their ids and of the sequences that passed their checks (for atlas.seen), and the rejections by kind
    (_reason_kind)."""

    records: int
    id_hashes: np.ndarray
    passed_checksum_hashes: np.ndarray
    rejected: Counter


def _reason_kind(reason: str) -> str:
    """A reason's fixed phrase (its words before the first ':', digit or quote: module docstring), for the
    summary; 'characters' as 'character'."""
    match = re.match(r"[a-z ]*[a-z]", reason)
    return re.sub(r"characters$", "character", match.group(0) if match else "")


def _parse_part(
    item: Block | SkippedRecord,
    fasta: str,
    part: str,
    min_length: int,
    max_length: int,
    copy_to: str | None,
) -> int:
    """Parse one block (in a worker thread) into a part of `_part_schema()` rows; returns the number of
    records. One compiled pass over the block (atlas.blockparse, MD5 included), then whole arrays (numpy,
    Arrow); only the records that need it (letters outside the standard 20, a length out of bounds,
    DNA-like, no id) take the per-record checks. With `copy_to`, the block's text is also written there, at
    its offset in the text (_text_source)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from atlas.blockparse import parse_block_arrays  # numba: loaded only when there is something to parse

    if isinstance(item, SkippedRecord):
        reason = f"too long: {item.length} residues > max_length {max_length}" if item.id else "empty id"
        id_crc = np.array([int(crc64_hex(item.id), 16)], np.uint64)
        columns = {
            "line": [item.line],
            "id": [item.id.decode()],
            "md5": [bytes.fromhex(item.checksum)],
            "length": [item.length],
            "reason": [reason],
            "description": [item.description.decode()],
            "is_fragment": [None],
            "header_fields": [[]],
            "body_start": [0],
            "body_end": [0],  # never queued, never cut again
            "line_width": [0],
            "member": _member(id_crc, np.array([int(item.crc64, 16)], np.uint64)),
            "id_hash": id_crc,
        }
        columns["header_fields"][0], columns["is_fragment"][0] = header_metadata(columns["description"][0])
        _write_part(pa.Table.from_pydict(columns, schema=_part_schema()), part)
        return _PartCounts(
            1,
            np.array(columns["id_hash"], np.uint64),
            np.empty(0, np.uint64),
            Counter([_reason_kind(reason)]),
        )
    data = item.data
    if copy_to is not None:
        _pwrite(copy_to, data, item.offset)
    block = parse_block_arrays(data)
    if block.strange:  # NUL bytes, CR line ends, UTF-8 headers: checked again, by record, for what is wrong
        check_block_text(item, fasta)
    count = len(block.lines)
    headers_id = _arrow_array(pa.string(), block.id_offsets, block.ids)
    headers_description = _arrow_array(pa.string(), block.description_offsets, block.descriptions)
    offsets, residues = block.offsets, block.residues
    lengths = np.diff(offsets).astype(np.int64)
    window = np.minimum(lengths, NUCLEOTIDE_WINDOW)
    allowed = np.floor((1 - NUCLEOTIDE_SHARE) * window + 1e-9).astype(np.int64)  # non-ACGTUN allowed
    looks_dna = (lengths >= NUCLEOTIDE_MIN_LENGTH) & (block.window_others <= allowed)
    ids_empty = np.diff(block.id_offsets) == 0
    needs_check = (lengths < min_length) | (lengths > max_length) | looks_dna | ids_empty | block.unusual

    reasons: list[str | None] = [None] * count
    checked = np.flatnonzero(needs_check)
    if len(checked):
        names = pc.take(headers_id, pa.array(checked)).to_pylist()
        for index, name in zip(checked.tolist(), names, strict=True):
            sequence = residues[offsets[index] : offsets[index + 1]].tobytes()
            reasons[index] = check_sequence(sequence, min_length, max_length) if name else "empty id"
    digests = block.md5
    sequence_crcs, id_crcs = block.sequence_crc64, block.id_crc64
    line_numbers = item.line + block.lines
    members = _member(id_crcs, sequence_crcs)

    fields, fragments = _header_metadata_column(headers_description)
    checksum_hashes = _checksum_hashes(digests.reshape(count, 16))
    table = pa.Table.from_arrays(
        [
            pa.array(line_numbers, pa.int64()),
            headers_id,
            pa.Array.from_buffers(pa.binary(16), count, [None, pa.py_buffer(digests)]),
            pa.array(lengths, pa.int64()),
            pa.array(reasons, pa.string()),
            headers_description,
            fragments,
            fields,
            pa.array(block.bodies[:, 0]),
            pa.array(block.bodies[:, 1]),
            pa.array(block.bodies[:, 2]),
            pa.array(members, pa.uint64()),
            pa.array(id_crcs, pa.uint64()),
        ],
        schema=_part_schema(),
    )
    _write_part(table, part, block=(item.offset, len(data)))
    passed = ~needs_check
    rejected: Counter = Counter()
    for index in checked.tolist():
        if reasons[index] is None:
            passed[index] = True
        else:
            rejected[reasons[index]] += 1
    kinds: Counter = Counter()
    for reason, number in rejected.items():
        kinds[_reason_kind(reason)] += number
    return _PartCounts(count, id_crcs, checksum_hashes[passed], kinds)


def _member(id_crc: np.ndarray, sequence_crc: np.ndarray) -> np.ndarray:
    """Records' shares of their chunk's name (module docstring): CRC64(id) rotated left by one bit, XOR
    CRC64(sequence) (uint64 arrays)."""
    return ((id_crc << np.uint64(1)) | (id_crc >> np.uint64(63))) ^ sequence_crc


def _crc64_column(part):
    """The manifest's crc64 column of a part's records, undone from `member` and `id_hash` (_member is its
    own inverse in the sequence's CRC64)."""
    crcs = _member(part.column("id_hash").to_numpy(), part.column("member").to_numpy())
    return _hex(crcs.astype(">u8").view(np.uint8).reshape(len(crcs), 8), _HEX_DIGITS)


def _md5_rows(column) -> np.ndarray:
    """A part's `md5` column (binary(16)) as a (rows, 16) uint8 array (no copy from one chunk)."""
    array = column.combine_chunks()
    data = array.buffers()[1]
    return np.frombuffer(data, np.uint8, 16 * len(array), 16 * array.offset).reshape(len(array), 16)


def _checksum_hashes(digests: np.ndarray) -> np.ndarray:
    """The first 8 bytes of each MD5 digest (rows of 16 bytes), big-endian: the first 16 hex digits of the
    checksum, as the dedupe's SQL reads them from earlier manifests."""
    return digests[:, :8].copy().view(">u8").ravel().astype(np.uint64)


def _write_part(table, path, block: tuple[int, int] = (0, 0)) -> None:
    """A part is an uncompressed Arrow IPC file, written and read back (memory-mapped) at memory speed
    where Parquet's encoding cost as much as the parsing. `block`: (offset, size) of the part's block in
    the text, kept in the schema's metadata."""
    import pyarrow as pa

    table = table.replace_schema_metadata({"block": f"{block[0]} {block[1]}"})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_part(path: Path, columns: list[str] | None = None):
    """A part written by _write_part, memory-mapped (no copy), with these columns only."""
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    return table.select(columns) if columns else table


def _part_block(part) -> tuple[int, int]:
    """(offset, size) in the text of the block a part was parsed from."""
    offset, size = part.schema.metadata[b"block"].split()
    return int(offset), int(size)


def _read_block(path: str, offset: int, size: int) -> bytes:
    """The `size` bytes at `offset` of a file the split reads again (a plain input, or its text copy), read
    for the last time: their pages leave the page cache (a 100 GB drop would otherwise push out what the
    node's other jobs cache, such as the MMseqs2 reference), and the chunk FASTAs written next take them."""
    with open(path, "rb") as handle:
        data = os.pread(handle.fileno(), size, offset)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(handle.fileno(), offset, size, os.POSIX_FADV_DONTNEED)
    if len(data) != size:
        raise SplitError(f"{path}: changed while it was being split (shorter); split it again")
    return data


def _pwrite(path: str, data, offset: int) -> None:
    """Write all of `data` at `offset` of the file (created if need be), whatever writes elsewhere in it."""
    handle = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with memoryview(data) as view:
            written = 0
            while written < len(view):  # pwrite may write less than asked (signals, some filesystems)
                written += os.pwrite(handle, view[written:], offset + written)
    finally:
        os.close(handle)


def _arrow_array(kind, offsets, data):
    """An Arrow binary or string array over these offsets and bytes (no copy)."""
    import pyarrow as pa

    return pa.Array.from_buffers(kind, len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _hex(rows, digits):
    """Each row of a 2-D uint8 array as hex text (two of `digits` per byte), an Arrow string array (no
    Python loop)."""
    import pyarrow as pa

    from atlas.blockparse import hex_text

    count, width = rows.shape
    offsets = np.arange(0, 2 * width * count + 1, 2 * width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), count, [None, pa.py_buffer(offsets), pa.py_buffer(hex_text(rows, digits))]
    )


def _header_metadata_column(descriptions):
    """(header_fields, is_fragment) arrays: each distinct description parsed once (MGnify drops repeat a few
    `PL=.. FL=.. CR=..` descriptions millions of times)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from atlas.tables import MANIFEST

    kinds = MANIFEST.field("header_fields").type
    if not pc.any(pc.greater(pc.binary_length(descriptions), 0)).as_py():
        count = len(descriptions)
        empty = pa.MapArray.from_arrays(
            pa.array(np.zeros(count + 1, np.int32)), pa.array([], pa.string()), pa.array([], pa.string())
        )
        return empty, pa.nulls(count, pa.bool_())
    encoded = descriptions.dictionary_encode()
    parsed = [header_metadata(text) for text in encoded.dictionary.to_pylist()]
    fields = pa.array([pairs for pairs, _ in parsed], kinds)
    fragments = pa.array([fragment for _, fragment in parsed], pa.bool_())
    return fields.take(encoded.indices), fragments.take(encoded.indices)


@dataclass
class _FirstPass:
    """What pass 1 adds up over the parts (_PartCounts): records, the ids and the passed sequences by their
    hashes (atlas.seen: which may be seen twice), rejections by kind."""

    records: int
    ids: SeenTwice | None  # None once the candidates are written (_write_candidates)
    checksums: SeenTwice | None
    rejected: Counter = field(default_factory=Counter)

    def add(self, counts: _PartCounts) -> None:
        self.records += counts.records
        self.ids.add(counts.id_hashes)
        self.checksums.add(counts.passed_checksum_hashes)
        self.rejected.update(counts.rejected)


def _read_drop(
    fasta: Path,
    parts: Path,
    min_length: int,
    max_length: int,
    show: bool,
    pool: _Workers,
    block_size: int,
    copy_to: Path | None,
    hashes_to: Path | None = None,
) -> _FirstPass:
    """Pass 1: cut the file into blocks and parse them (in the worker threads when there is more than one
    block) into parts `part-NNNNNNNNN.arrow` (_write_part), in file order; with `copy_to`, the text is
    copied there as well (_text_source); with `hashes_to`, the checksum hashes of the records that passed
    their checks are written there (Parquet, for the join with earlier drops)."""
    import pyarrow as pa

    from atlas.seen import SeenTwice, bits_for

    try:
        identity = fasta.stat()
        size, regular = identity.st_size, stat.S_ISREG(identity.st_mode)
    except OSError:
        size, regular = 0, False
    copy = None if copy_to is None else str(copy_to)
    # Slots for the records' hashes: a record per 128 bytes of text at most (gzip: 3 bytes of text a byte);
    # the most there are for a pipe, whose size is not known.
    expected = (size if copy is None else 3 * size) // 128 if regular else 1 << 62
    seen = _FirstPass(0, SeenTwice(bits_for(expected)), SeenTwice(bits_for(expected)))
    hash_schema = pa.schema([("checksum_hash", pa.uint64())])
    hashes = None
    if hashes_to is not None:
        import pyarrow.parquet as pq

        hashes = pq.ParquetWriter(hashes_to, hash_schema, compression="none")
    try:
        with _bar(show, total=size, unit="B", unit_scale=True, desc=f"reading {fasta.name}") as bar:
            # A plain file is read a block at a time where it is; gzip and pipes as a stream, their text
            # copied to `copy_to` (_text_source).
            cut = iter_blocks if copy is not None else iter_plain_blocks
            items = cut(fasta, bar.update, block_size, max_residues=max_length)
            first = next(items, None)
            second = next(items, None) if first is not None else None
            if first is None:
                _write_part(_part_schema().empty_table(), parts / f"part-{0:09d}{PART_SUFFIX}")
                return seen
            queue = [item for item in (first, second) if item is not None]

            def all_items():
                yield from queue
                yield from items

            parallel = second is not None and pool.count > 1
            tasks = (
                (
                    item,
                    str(fasta),
                    str(parts / f"part-{index:09d}{PART_SUFFIX}"),
                    min_length,
                    max_length,
                    copy,
                )
                for index, item in enumerate(all_items())
            )
            for counts in pool.map(_parse_part, tasks, parallel=parallel):
                seen.add(counts)
                if hashes is not None:
                    hashes.write_table(pa.table([counts.passed_checksum_hashes], schema=hash_schema))
    finally:
        if hashes is not None:
            hashes.close()
    return seen


def _text_source(fasta: Path, temp: Path) -> tuple[Path, Path | None, tuple | None]:
    """Where the write pass reads the queued sequences again: (the file, the copy to make in pass 1 or None,
    the input's identity to check at the end or None). A plain regular file is read again where it is, and
    must not change meanwhile (its size, mtime and inode are checked at the end, and every sequence's length
    as it is cut again); gzip input and pipes are copied, as text, into `temp` while pass 1 reads them."""
    from atlas.fasta import open_fasta

    try:
        identity = fasta.stat()
    except OSError:
        identity = None  # the reader says what is wrong with it
    is_gzip = False
    if identity is not None and stat.S_ISREG(identity.st_mode):  # a pipe is opened only once, by the reader
        stream, raw, is_gzip = open_fasta(fasta)
        stream.close()
        raw.close()
    if identity is None or is_gzip or not stat.S_ISREG(identity.st_mode):
        copy = temp / "text.fasta"
        copy.touch()
        return copy, copy, None
    return fasta, None, (identity.st_ino, identity.st_size, identity.st_mtime_ns)


def _check_unchanged(fasta: Path, identity: tuple | None) -> None:
    if identity is None:
        return
    try:
        now = fasta.stat()
    except OSError as error:
        raise SplitError(f"{fasta}: changed while it was being split ({error}); split it again") from None
    if (now.st_ino, now.st_size, now.st_mtime_ns) != identity:
        raise SplitError(f"{fasta}: changed while it was being split; split it again")


def _show_progress(fasta: Path, progress: bool | None) -> bool:
    """Progress bars: as asked, else for inputs of PROGRESS_MIN_BYTES or more."""
    if progress is not None:
        return progress
    try:
        return fasta.stat().st_size >= PROGRESS_MIN_BYTES
    except OSError:
        return False


def _bar(show: bool, **settings):
    """A tqdm bar on stderr (refreshed every 30 s when stderr is a log file), or a silent one."""
    from tqdm import tqdm

    interval = 0.5 if sys.stderr.isatty() else 30
    return tqdm(file=sys.stderr, disable=not show, mininterval=interval, **settings)


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
    """DuckDB's memory limit: $ATLAS_SPLIT_MEMORY_LIMIT (e.g. 2GB) if set, else DEFAULT_MEMORY_LIMIT. Past it
    DuckDB spills to the temporary directory."""
    return os.environ.get("ATLAS_SPLIT_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT


def _dedupe_and_chunk(
    parts: Path,
    first_pass: _FirstPass,
    drop: str,
    earlier: list[Path],
    length_buckets: list[int],
    chunk_residues: int,
    max_chunks: int | None,
    temp: Path,
    manifest: Path,
    chunk_dir: Path,
    source: Path,
    summary: SplitSummary,
    memory_limit: str | None,
    pool: _Workers,
    show: bool = False,
) -> None:
    """DuckDB finds the exceptions: the records that passed their checks but are not queued (repeated ids,
    duplicates), few and narrow, among the few records whose id or sequence the first pass flagged as
    maybe seen twice (_write_candidates); every other record is queued or was rejected by its part. The
    chunks are then assigned in two ordered passes over the parts' narrow columns (numpy, state per chunk
    only)."""
    import duckdb

    clock = time.monotonic()
    part_paths = sorted(parts.glob(f"part-*{PART_SUFFIX}"))
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET temp_directory = {sql_string(temp / 'spill')}")
        con.execute(f"SET memory_limit = {sql_string(memory_limit or _default_memory_limit())}")
        con.execute(f"SET threads = {_cpus()}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")

        # Sequences of this drop queued by earlier drops: the first queued row of each checksum, in drop then
        # row order (a checksum is queued once over all drops; the order only matters for hand-made input).
        if earlier:
            sources = " UNION ALL ".join(
                f"SELECT checksum, id, drop, ({index}::BIGINT << 40) + file_row_number AS rank "
                f"FROM read_parquet({sql_string(path)}, file_row_number = true) WHERE status = 'queued'"
                for index, path in enumerate(earlier)
            )
            # The earlier rows are matched on the checksum's hash first (its first 16 hex digits, as the
            # workers made checksum_hash) against those of this drop's records that passed their checks
            # (written by the first pass): a semi-join on integers, then exact strings.
            passed = sql_string(temp / "hashes.parquet")
            con.execute(
                f"""CREATE TABLE earlier AS
                SELECT checksum, arg_min(id, rank) AS id, arg_min(drop, rank) AS drop,
                    any_value(checksum_hash) AS checksum_hash
                FROM (SELECT *, TRY_CAST('0x' || substr(checksum, 1, 16) AS UBIGINT) AS checksum_hash
                      FROM ({sources}))
                WHERE checksum_hash IN (SELECT checksum_hash FROM read_parquet({passed}))
                GROUP BY checksum"""
            )
            # The records with those sequences are candidates too.
            first_pass.checksums.mark(
                con.execute("SELECT checksum_hash FROM earlier").fetchnumpy()["checksum_hash"]
            )
        else:
            con.execute(
                "CREATE TABLE earlier (checksum VARCHAR, id VARCHAR, drop VARCHAR, checksum_hash UBIGINT)"
            )
        bucket_of = _bucket_table(length_buckets)
        candidates, passed_by_part = _write_candidates(
            part_paths, first_pass, temp / "candidates", pool, bucket_of
        )
        first_pass.ids = first_pass.checksums = None  # their memory back before DuckDB's
        _free_memory()
        con.execute(
            f"""CREATE VIEW records AS SELECT {", ".join(RECORD_COLUMNS + HASH_COLUMNS)}
            FROM read_parquet({sql_string(candidates)})"""
        )

        # Repeated ids (the second and later records of an id, unless already rejected by their checks), then
        # duplicates (of earlier drops, then within this drop) among the rest. Ids and sequences seen more
        # than once are few: 64-bit hash aggregates find the candidates, exact strings decide.
        con.execute(
            """CREATE TABLE repeats AS
            WITH id_hashes AS (
                SELECT id_hash FROM records GROUP BY id_hash HAVING count(*) > 1
            ),
            id_candidates AS MATERIALIZED (  -- the few that may repeat an id: only they are read as strings
                SELECT line, id, length, reason FROM records WHERE id_hash IN (SELECT id_hash FROM id_hashes)
            ),
            repeated_ids AS (
                SELECT id, min(line) AS first_line FROM id_candidates GROUP BY id HAVING count(*) > 1
            )
            SELECT r.line, r.length, 'rejected' AS status,
                'repeated id: first occurrence at line ' || i.first_line AS reason, 'repeated id' AS kind
            FROM id_candidates r JOIN repeated_ids i USING (id)
            WHERE r.line <> i.first_line AND r.reason IS NULL"""
        )
        con.execute(
            """CREATE TABLE exceptions AS
            WITH checksum_hashes AS (  -- of sequences seen twice, or seen in an earlier drop (integers only)
                SELECT checksum_hash FROM records
                WHERE reason IS NULL AND line NOT IN (SELECT line FROM repeats)
                GROUP BY checksum_hash HAVING count(*) > 1
                UNION SELECT checksum_hash FROM earlier
            ),
            candidates AS MATERIALIZED (  -- the few that may be duplicates: only they are joined on strings
                SELECT line, id, checksum, length FROM records
                WHERE reason IS NULL AND line NOT IN (SELECT line FROM repeats)
                    AND checksum_hash IN (SELECT checksum_hash FROM checksum_hashes)
            ),
            owners AS (  -- the first record of each sequence that passed, if it has others
                SELECT checksum, min(line) AS owner_line, arg_min(id, line) AS owner_id FROM candidates
                GROUP BY checksum HAVING count(*) > 1
            )
            SELECT p.line, p.length, 'duplicate' AS status,
                CASE WHEN e.checksum IS NOT NULL THEN 'duplicate of ' || e.id || ' in drop ' || e.drop
                     ELSE 'duplicate of ' || o.owner_id || ' in drop ' || $drop END AS reason,
                CASE WHEN e.checksum IS NOT NULL THEN 'of an earlier drop' ELSE 'within the drop' END AS kind
            FROM candidates p LEFT JOIN owners o USING (checksum) LEFT JOIN earlier e USING (checksum)
            WHERE e.checksum IS NOT NULL OR o.owner_line <> p.line
            UNION ALL SELECT * FROM repeats""",
            {"drop": drop},
        )
        queued_residues = sum(int(passed.sum()) for passed in passed_by_part) - int(
            con.execute("SELECT coalesce(sum(length), 0) FROM exceptions").fetchall()[0][0]
        )
        residues_per_chunk = chunk_size(chunk_residues, queued_residues, len(length_buckets), max_chunks)
        summary.chunk_residues = residues_per_chunk
        assigner = _ChunkAssigner(length_buckets, residues_per_chunk)
        exception_rows = "SELECT line, status, reason, length FROM exceptions ORDER BY line"
        assigner.add_parts(_parts_with_exceptions(part_paths, con.sql(exception_rows)), passed_by_part, pool)
        summary.stages["dedupe"] = time.monotonic() - clock
        clock = time.monotonic()
        rows = assigner.rows(part_paths, con.sql(exception_rows))
        with _bar(show, total=summary.records, unit=" records", desc="writing chunks") as bar:
            summary.chunks = _write_outputs(
                rows, part_paths, drop, manifest, chunk_dir, source, pool, bar.update
            )
        summary.stages["write"] = time.monotonic() - clock
        kinds = Counter({("rejected", kind): count for kind, count in first_pass.rejected.items()})
        for status, kind, count in con.execute(
            "SELECT status, kind, count(*) FROM exceptions GROUP BY ALL"
        ).fetchall():
            kinds[status, kind] += count
        for (status, kind), count in sorted(kinds.items()):
            setattr(summary, status, getattr(summary, status) + count)
            summary.reasons[f"{status}: {kind}"] = count
        summary.queued = summary.records - summary.duplicate - summary.rejected
    finally:
        con.close()


def _write_candidates(
    part_paths: list[Path], first_pass: _FirstPass, folder: Path, pool: _Workers, bucket_of: np.ndarray
) -> tuple[str, list[np.ndarray]]:
    """The records whose id, or whose sequence if they passed their checks, the first pass flagged as maybe
    seen twice (or queued by an earlier drop), as plain Parquet files in `folder` for DuckDB (a file per
    part that has some, written by the workers, and an empty one): RECORD_COLUMNS and the hashes. All
    others are seen once, so neither repeat an id nor duplicate a sequence. Returns the files' glob, and
    each part's residues per length bucket (`bucket_of`: _bucket_table) of the records that passed their
    checks (for _ChunkAssigner.add_parts)."""
    import pyarrow.parquet as pq

    folder.mkdir()
    pq.write_table(_candidate_schema().empty_table(), folder / "empty.parquet")
    tasks = ((path, folder / f"{path.stem}.parquet", first_pass, bucket_of) for path in part_paths)
    passed = list(pool.map(_write_part_candidates, tasks, parallel=len(part_paths) > 1))
    return str(folder / "*.parquet"), passed


def _write_part_candidates(
    part_path: Path, path: Path, first_pass: _FirstPass, bucket_of: np.ndarray
) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = _read_part(part_path, ["line", "id", "md5", "length", "reason", "id_hash"])
    buckets = int(bucket_of[-1]) + 1
    if not part.num_rows:
        return np.zeros(buckets, np.int64)
    passed = part.column("reason").is_null().to_numpy(zero_copy_only=False)
    lengths = part.column("length").to_numpy()[passed]
    passed_residues = np.bincount(bucket_of[lengths], lengths, buckets)  # a passed length has a bucket
    digests = _md5_rows(part.column("md5"))
    checksum_hashes = _checksum_hashes(digests)
    flagged = first_pass.ids.flagged(part.column("id_hash").to_numpy()) | (
        passed & first_pass.checksums.flagged(checksum_hashes)
    )
    if flagged.any():
        rows = np.flatnonzero(flagged)
        picked = part.select(["line", "id", "length", "reason", "id_hash"]).take(pa.array(rows))
        columns = {name: picked.column(name) for name in picked.column_names}
        columns["checksum"] = _hex(digests[rows], _LOWER_HEX_DIGITS)
        columns["checksum_hash"] = pa.array(checksum_hashes[rows], pa.uint64())
        schema = _candidate_schema()
        pq.write_table(
            pa.table([columns[name] for name in schema.names], schema=schema),
            path,
            compression="none",
            use_dictionary=False,
            write_statistics=False,
        )
    return passed_residues.astype(np.int64)


def _parts_with_exceptions(part_paths: list[Path], relation):
    """(part path, the exception rows among its records, with the columns `relation` gives) for each part,
    in order: one ordered stream of exception rows cut at the parts' last lines."""
    import pyarrow as pa

    batches = _arrow_reader(relation)
    pending = None  # exception rows read past the previous part
    exhausted = False
    for path in part_paths:
        line = _read_part(path, ["line"]).column("line")
        if not len(line):
            yield path, None
            continue
        last = line[-1].as_py()
        tables = [] if pending is None else [pending]
        while not exhausted and (not tables or tables[-1].column("line")[-1].as_py() <= last):
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                exhausted = True
                break
            if batch.num_rows:
                tables.append(pa.Table.from_batches([batch]))
        if not tables:
            yield path, None
            continue
        rows = pa.concat_tables(tables).combine_chunks()
        lines = rows.column("line").to_numpy()
        cut = int(np.searchsorted(lines, last, side="right"))
        pending = rows.slice(cut) if cut < rows.num_rows else None
        yield path, rows.slice(0, cut)


def _bucket_table(length_buckets: list[int]) -> np.ndarray:
    """Each length's bucket index, for lengths 0 to the last bound, in the smallest unsigned type that holds
    them (uint8 for any real config: numpy then sorts them by radix)."""
    bounds = np.array(length_buckets, np.int64)
    return np.searchsorted(bounds, np.arange(bounds[-1] + 1)).astype(np.min_scalar_type(len(bounds)))


class _ChunkAssigner:
    """Chunks per bucket in input order, cut every `size` residues (module docstring), assigned part by part
    with a running total of residues per bucket: pass 1 (`add_parts`) XORs each chunk's members into its name,
    pass 2 (`rows`) gives each record's (checksum, status, reason, chunk) for _write_outputs."""

    STATUSES = ("queued", "rejected", "duplicate")

    def __init__(self, length_buckets: list[int], size: int):
        self.bounds = np.array(length_buckets, np.int64)
        self.size = size
        self.bucket_of = _bucket_table(length_buckets)
        self.hashes: dict[int, int] = {}  # chunk key (_assign) -> XOR of its members

    def _assign(self, part, exceptions, totals):
        """The queued records of a part, and their chunks: (queued mask, their rows by bucket then input
        order, each one's chunk key bucket index << 40 | chunk number (so non-decreasing), where each run
        of one chunk starts); `totals` moves on by the part's queued residues per bucket."""
        lengths = part.column("length").to_numpy()
        queued = part.column("reason").is_null().to_numpy(zero_copy_only=False)
        if exceptions is not None and exceptions.num_rows:
            lines = part.column("line").to_numpy()
            queued[np.searchsorted(lines, exceptions.column("line").to_numpy())] = False
        rows = np.flatnonzero(queued)
        buckets = self.bucket_of[lengths[rows]]  # a queued length is at most the last bound
        order = np.argsort(buckets, kind="stable")
        rows, buckets = rows[order], buckets[order]
        residues = lengths[rows]
        before = np.cumsum(residues) - residues  # residues of the queued before, in this order...
        sizes = np.bincount(buckets, minlength=len(totals))
        firsts = np.cumsum(sizes) - sizes  # (the first row of each bucket; of an empty one, the next's)
        if len(rows):  # ... in its bucket only
            before -= np.repeat(before[np.minimum(firsts, len(rows) - 1)], sizes)
        numbers = (totals[buckets] + before) // self.size
        totals += np.bincount(buckets, weights=residues, minlength=len(totals)).astype(np.int64)
        keys = (buckets.astype(np.int64) << 40) | numbers
        return queued, rows, keys, np.flatnonzero(np.diff(keys, prepend=-1))

    def add_parts(self, parts_with_exceptions, passed_by_part: list[np.ndarray], pool: _Workers) -> None:
        """Pass 1: each chunk's members XORed into its name. The residues queued before each part are known
        up front (what passed its checks, by part, less the exceptions' residues), so the parts are done by
        the workers, in any order (XOR does not care)."""

        def tasks():
            totals = np.zeros(len(self.bounds), np.int64)
            for (path, exceptions), passed in zip(parts_with_exceptions, passed_by_part, strict=True):
                yield path, exceptions, totals.copy()
                totals += passed
                if exceptions is not None and exceptions.num_rows:
                    lengths = exceptions.column("length").to_numpy()
                    totals -= np.bincount(self.bucket_of[lengths], lengths, len(totals)).astype(np.int64)

        for keys, xors in pool.map(self._xors, tasks(), parallel=len(passed_by_part) > 1):
            for key, xor in zip(keys, xors, strict=True):
                self.hashes[key] = self.hashes.get(key, 0) ^ xor

    def _xors(self, path: Path, exceptions, totals) -> tuple[list[int], list[int]]:
        """The chunk keys of one part's queued records and the XOR of each chunk's members among them."""
        part = _read_part(path, ["line", "length", "reason", "member"])
        if not part.num_rows:
            return [], []
        _, rows, keys, starts = self._assign(part, exceptions, totals)
        if not len(rows):
            return [], []
        xors = np.bitwise_xor.reduceat(part.column("member").to_numpy()[rows], starts)
        return keys[starts].tolist(), xors.tolist()

    def rows(self, part_paths: list[Path], relation):
        """Pass 2: a RecordBatchReader of (checksum, status, reason, chunk), one batch per part, in order."""
        import pyarrow as pa
        import pyarrow.compute as pc

        low = (1 << 40) - 1
        most = max((key & low for key in self.hashes), default=0)
        bound_width, number_width = max(4, len(str(self.bounds[-1]))), max(5, len(str(most)))
        codes = {key: code for code, key in enumerate(self.hashes)}
        names = pa.array(
            [
                f"L{self.bounds[key >> 40]:0{bound_width}d}-{key & low:0{number_width}d}-"
                + f"{xor:016x}"[:CHUNK_HASH_DIGITS]
                for key, xor in self.hashes.items()
            ],
            pa.string(),
        )
        statuses = pa.array(self.STATUSES, pa.string())
        schema = pa.schema(
            [(name, pa.string()) for name in ("checksum", "status", "reason", "chunk")]
            + [("chunk_code", pa.int64())]  # a number per chunk (any order): for _write_outputs
        )

        def batches():
            totals = np.zeros(len(self.bounds), np.int64)
            for path, exceptions in _parts_with_exceptions(part_paths, relation):
                part = _read_part(path, ["line", "md5", "length", "reason"])
                if not part.num_rows:
                    continue
                queued, rows, keys, starts = self._assign(part, exceptions, totals)
                status = np.where(queued, 0, 1)
                reason = part.column("reason").combine_chunks()
                if exceptions is not None and exceptions.num_rows:
                    at = np.searchsorted(part.column("line").to_numpy(), exceptions.column("line").to_numpy())
                    duplicate = pc.equal(exceptions.column("status"), "duplicate").to_numpy(
                        zero_copy_only=False
                    )
                    status[at] = np.where(duplicate, 2, 1)
                    replaced = np.zeros(part.num_rows, bool)
                    replaced[at] = True
                    reason = pc.replace_with_mask(
                        reason, pa.array(replaced), exceptions.column("reason").combine_chunks()
                    )
                chunk = np.zeros(part.num_rows, np.int64)
                runs = np.diff(np.append(starts, len(rows)))
                chunk[rows] = np.repeat([codes[key] for key in keys[starts].tolist()], runs)
                yield pa.record_batch(
                    [
                        _hex(_md5_rows(part.column("md5")), _LOWER_HEX_DIGITS),
                        statuses.take(pa.array(status)),
                        reason,
                        names.take(pa.array(chunk, mask=~queued)),
                        pa.array(chunk),
                    ],
                    schema=schema,
                )

        return pa.RecordBatchReader.from_batches(schema, batches())


def _arrow_reader(relation, rows: int = ROW_GROUP):
    """Record batches of a DuckDB relation, streamed (newer duckdb names it to_arrow_reader); a
    RecordBatchReader as it is."""
    if not hasattr(relation, "to_arrow_reader") and hasattr(relation, "read_next_batch"):
        return relation
    if hasattr(relation, "to_arrow_reader"):
        return relation.to_arrow_reader(rows)
    return relation.fetch_arrow_reader(rows)


def _write_outputs(
    result,
    parts: list[Path],
    drop: str,
    manifest: Path,
    chunk_dir: Path,
    source: Path,
    pool: _Workers,
    done: Callable[[int], None] | None = None,
) -> list[str]:
    """One ordered pass over the parts beside the (status, reason, chunk) rows of the same records: this
    thread makes the manifest's rows (_RowGroupWriter encodes them), the workers write the chunk FASTAs. Each
    chunk's records are numbered in input order, so where a part's records go in a chunk FASTA is known from
    the sizes of the parts before it: a worker writes them there (pwrite), in parallel with the others, and
    the files come out as one writer would make them, cutting the sequences again from the text in `source`
    (_text_source). `done(n)` is told of each part's n records. Returns the chunk names, sorted."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from atlas.tables import MANIFEST

    batches = _arrow_reader(result)
    chunk_bytes: dict[str, int] = {}  # bytes of each chunk FASTA so far: where the next part's records go

    def fasta_tasks(writer):
        pending: list = []  # classified rows read but not yet matched to a part
        pending_rows = 0
        waiting: list = []  # manifest rows not yet written
        waiting_rows = 0
        for path in parts:
            part = _read_part(path, [*_MANIFEST_FROM_PART, "member", "id_hash"])
            if not part.num_rows:  # the one part of an empty drop
                continue
            while pending_rows < part.num_rows:
                batch = batches.read_next_batch()
                pending.append(batch)
                pending_rows += batch.num_rows
            rows = pa.Table.from_batches(pending).combine_chunks()
            mine, rest = rows.slice(0, part.num_rows), rows.slice(part.num_rows)
            pending, pending_rows = rest.to_batches(), rest.num_rows
            chunk = mine.column("chunk").combine_chunks()
            columns = {name: part.column(name) for name in _MANIFEST_FROM_PART}
            columns.update(
                drop=pa.repeat(pa.scalar(drop), part.num_rows),
                checksum=mine.column("checksum"),
                status=mine.column("status"),
                reason=mine.column("reason"),
                chunk=chunk,
                crc64=_crc64_column(part),
            )
            waiting.append(pa.table([columns[name] for name in MANIFEST.names], schema=MANIFEST))
            waiting_rows += part.num_rows
            if done is not None:
                done(part.num_rows)
            if waiting_rows >= ROW_GROUP:  # row groups of ROW_GROUP rows whatever the block size
                ready = pa.concat_tables(waiting)  # (no copy: the writer takes the pieces as they are)
                whole = ready.num_rows // ROW_GROUP * ROW_GROUP
                writer.write(ready.slice(0, whole))
                waiting, waiting_rows = [ready.slice(whole)], ready.num_rows - whole

            queued = np.flatnonzero(chunk.is_valid().to_numpy(zero_copy_only=False))
            if not len(queued):
                continue
            numbers = mine.column("chunk_code").to_numpy()[queued]
            present = np.flatnonzero(np.bincount(numbers))  # this part's chunks (no sort: few numbers)
            local = np.zeros(present[-1] + 1, np.int64)
            local[present] = np.arange(len(present))
            codes = local[numbers]
            firsts = np.zeros(len(present), np.int64)
            firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # each chunk's first row: last write wins
            names = chunk.take(pa.array(queued[firsts])).to_pylist()
            sizes = (  # '>' id '\n' sequence '\n'
                pc.binary_length(part.column("id")).to_numpy()[queued]
                + part.column("length").to_numpy()[queued]
                + 3
            )
            per_chunk = np.bincount(codes, weights=sizes, minlength=len(names)).astype(np.int64)
            starts = []
            for name, size in zip(names, per_chunk.tolist(), strict=True):
                starts.append(chunk_bytes.get(name, 0))
                chunk_bytes[name] = starts[-1] + size
            yield str(path), str(source), queued, codes, names, starts, str(chunk_dir)
        if waiting_rows:
            writer.write(pa.concat_tables(waiting))

    # Dictionaries only where values repeat: trying one on the unique ids and checksums cost more than the
    # rest of the encoding.
    with (
        pq.ParquetWriter(
            manifest,
            MANIFEST,
            compression="zstd",
            compression_level=1,
            use_dictionary=MANIFEST_DICTIONARY,
            write_statistics=[name for name in MANIFEST.names if name not in MANIFEST_HEX],
            column_encoding=dict.fromkeys(MANIFEST_HEX, "DELTA_LENGTH_BYTE_ARRAY"),
        ) as parquet,
        _RowGroupWriter(parquet) as writer,
    ):
        for _ in pool.map(_write_chunk_records, fasta_tasks(writer), parallel=len(parts) > 1):
            pass
    return sorted(chunk_bytes)


class _RowGroupWriter:
    """Row groups of ROW_GROUP rows encoded into a ParquetWriter by a thread of its own (Arrow releases the
    GIL), one at a time, while the calling thread makes the next: the write pass's own thread, which also
    hands the chunk FASTAs to the workers, was otherwise busy for 90% of the pass."""

    def __init__(self, parquet):
        self._parquet = parquet
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlas-manifest")
        self._pending = None

    def write(self, table) -> None:
        self._wait()
        self._pending = self._thread.submit(self._parquet.write_table, table, row_group_size=ROW_GROUP)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace) -> None:
        try:
            self._wait()
        except Exception:
            if error is None:
                raise  # else the error that stopped the pass is the one to report
        finally:
            self._thread.shutdown()


# The manifest's columns that a part holds as they are.
_MANIFEST_FROM_PART = ("id", "length", "description", "is_fragment", "header_fields")
_BODY_COLUMNS = ("body_start", "body_end", "line_width")  # a record's `bodies` row (atlas.blockparse)


def _write_chunk_records(
    path: str, source: str, queued, codes, names: list[str], starts: list[int], chunk_dir: str
) -> None:
    """Write the queued records of one part into their chunk FASTAs (`>{id}` then the sequence on one line),
    cut again from the part's block of `source`: the records of chunk names[c] (those with code c, in input
    order) at byte starts[c] of its file."""
    from atlas.blockparse import records_text

    part = _read_part(Path(path), ["id", "length", *_BODY_COLUMNS])
    data = _read_block(source, *_part_block(part))
    ids = part.column("id").combine_chunks()
    _, id_offsets, id_data = ids.buffers()
    bodies = np.stack([part.column(name).to_numpy() for name in _BODY_COLUMNS], axis=1)
    text, starts_in_text, wrong = records_text(
        np.frombuffer(data, np.uint8),
        bodies,
        np.frombuffer(id_data, np.uint8),
        np.frombuffer(id_offsets, np.int32, len(ids) + 1, ids.offset),
        part.column("length").to_numpy(),
        queued,
        codes,
        len(names),
    )
    if wrong >= 0:
        name = ids[int(queued[wrong])].as_py()
        raise SplitError(f"{source}: changed while it was being split (record {name}); split it again")
    for code, name in enumerate(names):
        first, last = starts_in_text[code], starts_in_text[code + 1]
        _pwrite(str(Path(chunk_dir) / f"{name}.fasta"), text[first:last], starts[code])
    Path(path).unlink()  # read for the last time: removed here, beside the other workers, not at the end


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
    lines.append(
        f"  {len(summary.chunks)} chunks of up to {summary.chunk_residues} residues written"
        + (f" ({buckets})" if buckets else "")
    )
    if summary.stages:
        lines.append("  seconds: " + ", ".join(f"{stage} {sec:.1f}" for stage, sec in summary.stages.items()))
    lines.append(f"  peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB")
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
    parser.add_argument(
        "--slot-dir",
        type=Path,
        help="write the chunk FASTAs as slot files there (atlas.chunkstore), not beside the manifest:"
        " for remote storage",
    )
    parser.add_argument("--slots", type=int, default=0, help="how many slot files (max_chunks_per_drop)")
    defaults = schema_defaults()  # the config schema's, defined there once
    parser.add_argument("--min-length", type=int, default=defaults.get("min_length"))
    parser.add_argument("--max-length", type=int, default=defaults.get("max_length"))
    parser.add_argument("--length-buckets", type=int, nargs="+", default=defaults.get("length_buckets"))
    parser.add_argument("--chunk-residues", type=int, default=defaults.get("chunk_residues"))
    parser.add_argument(
        "--max-chunks",
        type=int,
        default=defaults.get("max_chunks_per_drop"),
        help="at most this many chunks (fold jobs) for the drop: chunk_residues is raised where needed",
    )
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
            args.max_chunks,
            slot_dir=args.slot_dir,
            slots=args.slots,
        )
    except (SplitError, FastaFormatError, OSError) as error:  # OSError: unwritable output, disk full
        print(f"atlas split: error: {error}", file=sys.stderr)
        return 1
    print(format_summary(args.drop, args.fasta, summary), file=sys.stderr)
    return 0
