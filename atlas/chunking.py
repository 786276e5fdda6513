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

How it scales (MGnify drops reach 10^8 records, 10^5 files): the file is read in ~16 MB blocks of whole
records (ISA-L for gzip); the blocks are parsed in parallel by worker processes (one per CPU this process
may run on: sched_getaffinity, so SLURM/cgroup aware), vectorised over the block with numpy and Arrow (a
loop per record only for CRC64 and for the few records that need normalising or a reason), into one
Parquet part per block: normalised sequence, length, CRC64, header metadata (each distinct description
parsed once). A record longer than max_length is streamed through its checksums by the reader and never
held whole. DuckDB, which spills to disk, then computes the MD5s (vectorised, on every CPU), finds
repeated ids, first occurrences of each sequence and duplicates of earlier drops (joined out of core, never
loaded into Python), and assigns chunks and their names from narrow rows. Last, one ordered pass over the
parts writes the manifest and appends each queued record to its chunk FASTA (one Arrow slice per chunk and
part). Memory: a worker holds one block and its arrays (~300 MB peak), DuckDB is capped by
$ATLAS_SPLIT_MEMORY_LIMIT (e.g. `2GB`), else 320 MB, and spills past it; measured on a 1 GB drop: 860 MiB
for the main process, 320 MiB per worker (whose pass is over before DuckDB starts), whatever the size of
the drop or the number of earlier drops. Temporary disk: about the size of the uncompressed drop.
Everything is written into a temporary directory beside the manifest and moved into place at the end,
chunk FASTAs first and the manifest last; a failed or killed run leaves no manifest behind (chunk FASTAs,
being named by content, are left for a later run to reuse or remove).
Output is deterministic, byte for byte, for the same input and settings.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import multiprocessing
import os
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from atlas.chunkstore import install_slots
from atlas.config import schema_defaults
from atlas.fasta import (
    BLOCK_SIZE,
    NUCLEOTIDE_MIN_LENGTH,
    NUCLEOTIDE_RESIDUES,
    NUCLEOTIDE_SHARE,
    NUCLEOTIDE_WINDOW,
    STANDARD_RESIDUES,
    Block,
    FastaFormatError,
    SkippedRecord,
    check_sequence,
    crc64_calc,
    header_metadata,
    iter_blocks,
    normalise,
    parse_block,
)
from atlas.sql import sql_string

# What a chunk FASTA of ours looks like (stale-file cleanup); the hash-less form is the older naming.
CHUNK_NAME = re.compile(r"^L\d+-\d+(-[0-9a-f]+)?\.fasta$")
CHUNK_HASH_DIGITS = 10
TEMP_PREFIX = ".split-tmp-"
ROW_GROUP = 1 << 17  # rows per streamed batch of (status, reason, chunk)
PROGRESS_MIN_BYTES = 64 << 20  # show a progress bar for inputs at least this large
DEFAULT_MEMORY_LIMIT = "320MB"  # DuckDB's cap: the whole job then stays under 1 GB


_STANDARD_BYTES = STANDARD_RESIDUES.encode()


def _byte_table(letters: str, inside: int):
    table = np.full(256, 1 - inside, np.uint8)
    table[list(letters.encode())] = inside
    return table


_NOT_STANDARD = _byte_table(STANDARD_RESIDUES, 0)
_NUCLEOTIDE = _byte_table(NUCLEOTIDE_RESIDUES, 1)
_HEX_DIGITS = np.frombuffer(b"0123456789ABCDEF", np.uint8)


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
    `workers`: parsing processes (default: the CPUs this process may use; 1 parses in this process);
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
    temp: Path | None = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(TEMP_PREFIX + "*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        temp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out_dir))
        parts = temp / "parts"
        parts.mkdir()
        summary = SplitSummary()
        summary.records = _read_drop(
            fasta, parts, min_length, max_length, progress, workers or _cpus(), block_size
        )
        summary.stages["read"] = time.monotonic() - start
        chunk_dir = temp / "chunks"
        chunk_dir.mkdir()
        _dedupe_and_chunk(
            parts,
            drop,
            earlier,
            length_buckets,
            chunk_residues,
            max_chunks,
            temp,
            temp / "manifest.parquet",
            chunk_dir,
            summary,
            memory_limit,
        )
        clock = time.monotonic()
        summary.kept = _install(
            temp / "manifest.parquet", chunk_dir, manifest, keep=fasta, slots=(slot_dir, slots)
        )
        summary.stages["install"] = time.monotonic() - clock
    except BaseException:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        manifest.unlink(missing_ok=True)
        raise
    shutil.rmtree(temp, ignore_errors=True)
    summary.seconds = time.monotonic() - start
    return summary


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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

    return pa.schema(
        [
            ("line", pa.int64()),
            MANIFEST.field("id"),
            ("checksum", pa.string()),  # only for a record the reader skipped (too long); else md5(sequence)
            MANIFEST.field("crc64"),
            MANIFEST.field("length"),
            ("reason", pa.string()),  # why the record failed its checks; null: it passed
            MANIFEST.field("description"),
            MANIFEST.field("is_fragment"),
            MANIFEST.field("header_fields"),
            ("sequence", pa.binary()),  # normalised (null for a record the reader skipped)
            ("member", pa.uint64()),  # the record's share of its chunk's name (module docstring)
        ]
    )


def _parse_part(item: Block | SkippedRecord, fasta: str, part: str, min_length: int, max_length: int) -> int:
    """Parse one block (in a worker process) into a Parquet part of `_part_schema()` rows; returns the
    number of records. Vectorised over the block (numpy, Arrow); only records that need it (non-standard
    letters, lower case, a terminal '*', a length out of bounds, DNA-like) take the per-record checks."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if isinstance(item, SkippedRecord):
        reason = f"too long: {item.length} residues > max_length {max_length}" if item.id else "empty id"
        columns = {
            "line": [item.line],
            "id": [item.id.decode()],
            "checksum": [item.checksum],
            "crc64": [item.crc64],
            "length": [item.length],
            "reason": [reason],
            "description": [item.description.decode()],
            "is_fragment": [None],
            "header_fields": [[]],
            "sequence": [None],
            "member": [0],  # never queued
        }
        columns["header_fields"][0], columns["is_fragment"][0] = header_metadata(columns["description"][0])
        pq.write_table(pa.Table.from_pydict(columns, schema=_part_schema()), part, compression="none")
        return 1
    data = item.data
    if b"\r" in data or not data.isascii():
        # CR line ends or UTF-8 headers: the per-record reader (which names a record with bad UTF-8)
        ids, descriptions, sequences, lines = [], [], [], []
        for name, description, sequence, line, _ in parse_block(item, fasta):
            ids.append(name)
            descriptions.append(description)
            sequences.append(sequence)
            lines.append(line)
        headers_id = pa.array(ids, pa.binary()).cast(pa.string())
        headers_description = pa.array(descriptions, pa.binary()).cast(pa.string())
        sequence_array = pa.array(sequences, pa.binary())
        line_numbers = np.array(lines, np.int64)
        slow = np.arange(len(ids))
    else:
        headers_id, headers_description, sequence_array, line_numbers, slow = _split_block(item)
    count = len(sequence_array)

    # Records whose sequence needs the per-record path: anything but the 20 standard letters.
    offsets = np.frombuffer(sequence_array.buffers()[1], np.int32, count + 1, sequence_array.offset * 4)
    residues = np.frombuffer(sequence_array.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    lengths = np.diff(offsets).astype(np.int64)
    if len(slow) == 0 and residues.tobytes().translate(None, _STANDARD_BYTES):
        bad = np.flatnonzero(_NOT_STANDARD[residues])
        slow = np.unique(np.searchsorted(offsets, bad, side="right") - 1)
    looks_dna = _looks_like_nucleotides(residues, offsets, lengths)
    ids_empty = pc.equal(pc.binary_length(headers_id), 0).to_numpy(zero_copy_only=False)
    needs_check = (lengths < min_length) | (lengths > max_length) | looks_dna | ids_empty
    needs_check[slow] = True

    sequences = None
    reasons: list[str | None] = [None] * count
    checked = np.flatnonzero(needs_check)
    if len(checked):
        sequences = sequence_array.to_pylist()
        names = headers_id.to_pylist()
        unnormalised = set(slow.tolist())
        for index in checked.tolist():
            sequence = sequences[index]
            if index in unnormalised:
                sequence = sequences[index] = normalise(sequence)
                lengths[index] = len(sequence)
            reasons[index] = check_sequence(sequence, min_length, max_length) if names[index] else "empty id"
        sequence_array = pa.array(sequences, pa.binary())
    calc = crc64_calc()
    sequence_crcs = np.fromiter(map(calc, sequences or sequence_array.to_pylist()), np.uint64, count)
    id_crcs = np.fromiter(map(calc, headers_id.cast(pa.binary()).to_pylist()), np.uint64, count)
    # A record's share of its chunk's name: CRC64(id) rotated left by one bit, XOR CRC64(sequence).
    members = ((id_crcs << np.uint64(1)) | (id_crcs >> np.uint64(63))) ^ sequence_crcs

    fields, fragments = _header_metadata_column(headers_description)
    table = pa.Table.from_arrays(
        [
            pa.array(line_numbers, pa.int64()),
            headers_id,
            pa.nulls(count, pa.string()),
            _hex16(sequence_crcs),
            pa.array(lengths, pa.int64()),
            pa.array(reasons, pa.string()),
            headers_description,
            fragments,
            fields,
            sequence_array,
            pa.array(members, pa.uint64()),
        ],
        schema=_part_schema(),
    )
    pq.write_table(table, part, compression="none", use_dictionary=False, write_statistics=False)
    return count


def _looks_like_nucleotides(residues, offsets, lengths):
    """Per record: atlas.fasta.is_nucleotide, vectorised. The first 16 residues filter (a record that passes
    the rule has at least 16 - 10% of its window of them in ACGTUN); the full window is gathered only for
    the few that pass the filter."""

    result = np.zeros(len(lengths), bool)
    if not len(residues):
        return result
    window = np.minimum(lengths, NUCLEOTIDE_WINDOW)
    allowed = np.floor((1 - NUCLEOTIDE_SHARE) * window + 1e-9).astype(np.int64)  # non-ACGTUN allowed
    candidates = np.flatnonzero(lengths >= NUCLEOTIDE_MIN_LENGTH)
    for width in (16, NUCLEOTIDE_WINDOW):
        steps = np.arange(width)
        at = np.minimum(offsets[candidates, None] + steps, len(residues) - 1)
        inside = steps < window[candidates, None]
        others = (inside & (_NUCLEOTIDE[residues[at]] == 0)).sum(axis=1)
        candidates = candidates[others <= allowed[candidates]]
    result[candidates] = True
    return result


def _hex16(values):
    """uint64 values as 16 upper-case hex digits each, an Arrow string array (no Python loop)."""
    import pyarrow as pa

    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    digits = _HEX_DIGITS[((values[:, None] >> shifts) & np.uint64(15)).astype(np.uint8)]
    offsets = np.arange(0, 16 * len(values) + 1, 16, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(values), [None, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes())]
    )


def _split_block(block: Block):
    """A block with '\n' line ends only and ASCII text, cut without a loop per record: (ids, descriptions,
    sequences with the newlines removed but otherwise as written, header line numbers, an empty array)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    data = block.data
    text = np.frombuffer(data, np.uint8)
    size = len(text)
    newlines = np.flatnonzero(text == 10)
    after = newlines + 1
    after = after[after < size]
    starts = np.concatenate(([0], after[text[after] == ord(">")]))
    count = len(starts)
    before = np.searchsorted(newlines, starts)  # newlines before each header
    ends = np.full(count, size)  # end of each header line
    inside = before < len(newlines)
    ends[inside] = newlines[before[inside]]
    # Headers: every other element of an array over the text whose offsets alternate header / the rest.
    bounds = np.empty(2 * count, np.int64)
    bounds[0::2], bounds[1::2] = starts + 1, ends
    headers = _every_other(data, bounds)
    # Sequences: the same over the text without its newlines (a header's offset shifts by the newlines
    # before it), taking the spans from the end of each header to the start of the next.
    compact = data.translate(None, b"\n")
    bounds[0::2] = ends - before
    bounds[1:-1:2] = starts[1:] - before[1:]
    bounds[-1] = len(compact)
    sequences = _every_other(compact, bounds)
    headers = headers.view(pa.string())
    if pc.any(pc.match_substring_regex(headers, r"\s")).as_py():
        trimmed = pc.utf8_trim_whitespace(headers)
        ids = pc.replace_substring_regex(trimmed, r"\s.*$", "")
        descriptions = pc.replace_substring_regex(trimmed, r"^\S*\s+", "")
        descriptions = pc.if_else(pc.equal(ids, trimmed), "", descriptions)
    else:
        ids, descriptions = headers, pa.array([""] * count, pa.string())
    return ids, descriptions, sequences, block.line + before, np.empty(0, np.int64)


def _every_other(data: bytes, bounds):
    """Elements 0, 2, 4... of the binary array over `data` with these offsets (copied, contiguous)."""
    import pyarrow as pa

    elements = len(bounds) - 1
    spans = pa.Array.from_buffers(
        pa.binary(), elements, [None, pa.py_buffer(bounds.astype(np.int32)), pa.py_buffer(data)]
    )
    return spans.take(pa.array(np.arange(0, elements, 2)))


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
            pa.array([0] * (count + 1), pa.int32()), pa.array([], pa.string()), pa.array([], pa.string())
        )
        return empty, pa.nulls(count, pa.bool_())
    encoded = descriptions.dictionary_encode()
    parsed = [header_metadata(text) for text in encoded.dictionary.to_pylist()]
    fields = pa.array([pairs for pairs, _ in parsed], kinds)
    fragments = pa.array([fragment for _, fragment in parsed], pa.bool_())
    return fields.take(encoded.indices), fragments.take(encoded.indices)


def _read_drop(
    fasta: Path,
    parts: Path,
    min_length: int,
    max_length: int,
    progress: bool | None,
    workers: int,
    block_size: int,
) -> int:
    """Pass 1: cut the file into blocks and parse them (in `workers` processes when there is more than one
    block) into Parquet parts `part-NNNNNNNNN.parquet`, in file order. Returns the number of records."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

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
    count = 0
    with bar:
        items = iter_blocks(fasta, bar.update, block_size, max_residues=max_length)
        first = next(items, None)
        second = next(items, None) if first is not None else None
        if first is None:
            pq.write_table(_part_schema().empty_table(), parts / "part-000000000.parquet")
            return 0
        queue = [item for item in (first, second) if item is not None]

        def all_items():
            yield from queue
            yield from items

        arguments = (str(fasta), min_length, max_length)
        if second is None or workers <= 1:
            for index, item in enumerate(all_items()):
                part = str(parts / f"part-{index:09d}.parquet")
                count += _parse_part(item, arguments[0], part, *arguments[1:])
            return count
        # Bounded in flight: memory stays a few blocks per worker, whatever the size of the drop.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending: deque = deque()
            try:
                for index, item in enumerate(all_items()):
                    part = str(parts / f"part-{index:09d}.parquet")
                    pending.append(pool.submit(_parse_part, item, arguments[0], part, *arguments[1:]))
                    while len(pending) > 2 * workers:
                        count += pending.popleft().result()
                while pending:
                    count += pending.popleft().result()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
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
    """DuckDB's memory limit: $ATLAS_SPLIT_MEMORY_LIMIT (e.g. 2GB) if set, else DEFAULT_MEMORY_LIMIT. Past it
    DuckDB spills to the temporary directory."""
    return os.environ.get("ATLAS_SPLIT_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT


def _dedupe_and_chunk(
    parts: Path,
    drop: str,
    earlier: list[Path],
    length_buckets: list[int],
    chunk_residues: int,
    max_chunks: int | None,
    temp: Path,
    manifest: Path,
    chunk_dir: Path,
    summary: SplitSummary,
    memory_limit: str | None,
) -> None:
    import duckdb

    clock = time.monotonic()
    con = duckdb.connect(":memory:")
    try:
        con.execute(f"SET temp_directory = {sql_string(temp / 'spill')}")
        con.execute(f"SET memory_limit = {sql_string(memory_limit or _default_memory_limit())}")
        con.execute(f"SET threads = {_cpus()}")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET enable_progress_bar = false")
        # MD5 here: vectorised and on every CPU, where Python would pay a call per record.
        con.execute(
            f"""CREATE TABLE records AS
            SELECT line, id, coalesce(checksum, md5(sequence)) AS checksum, length, reason, member
            FROM read_parquet({sql_string(parts / "part-*.parquet")})"""
        )
        records = "records"

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
                WHERE checksum IN (SELECT checksum FROM {records} WHERE reason IS NULL)
                GROUP BY checksum"""
            )
        else:
            con.execute("CREATE TABLE earlier (checksum VARCHAR, id VARCHAR, drop VARCHAR)")

        # Rejections (validation, then repeated ids), then duplicates (earlier drops, then within this drop).
        # Narrow rows only: sequences stay in the parts. Ids and sequences seen more than once are few: they
        # are found by aggregates and only they are looked at again.
        con.execute(
            f"""CREATE TABLE classified AS
            WITH repeated_ids AS (
                SELECT id, min(line) AS first_line FROM {records} GROUP BY id HAVING count(*) > 1
            ),
            checked AS (
                SELECT r.line, r.id, r.checksum, r.length, r.member,
                    coalesce(r.reason, CASE WHEN r.line <> i.first_line
                        THEN 'repeated id: first occurrence at line ' || i.first_line END) AS reason
                FROM {records} r LEFT JOIN repeated_ids i USING (id)
            ),
            owners AS (  -- the first record of each sequence that passed the checks, if it has others
                SELECT checksum, min(line) AS owner_line, arg_min(id, line) AS owner_id
                FROM checked WHERE reason IS NULL GROUP BY checksum HAVING count(*) > 1
            )
            SELECT c.line, c.id, c.checksum, c.length, c.member,
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

        # Chunks: per bucket, in input order, cut every chunk_residues residues; named by their content: the
        # XOR of the members' CRC64-based shares (computed by the parsing workers).
        bucket_of = (
            "CASE " + " ".join(f"WHEN length <= {bound} THEN {bound}" for bound in length_buckets) + " END"
        )
        queued_residues = con.execute(
            "SELECT coalesce(sum(length), 0) FROM classified WHERE status = 'queued'"
        ).fetchone()[0]
        residues_per_chunk = chunk_size(chunk_residues, queued_residues, len(length_buckets), max_chunks)
        summary.chunk_residues = residues_per_chunk
        con.execute(
            f"""CREATE TABLE assigned AS
            SELECT line, bound,
                (sum(length) OVER (PARTITION BY bound ORDER BY line ROWS UNBOUNDED PRECEDING) - length)
                    // {residues_per_chunk} AS number,
                member
            FROM (SELECT line, length, member, {bucket_of} AS bound FROM classified
                  WHERE status = 'queued')"""
        )
        most = con.execute("SELECT coalesce(max(number), 0) FROM assigned").fetchone()[0]
        bound_width = max(4, len(str(length_buckets[-1])))
        number_width = max(5, len(str(most)))
        con.execute(
            f"""CREATE TABLE named AS
            SELECT bound, number,
                'L' || lpad(bound::VARCHAR, {bound_width}, '0')
                || '-' || lpad(number::VARCHAR, {number_width}, '0')
                || '-' || left(printf('%016x', bit_xor(member)), {CHUNK_HASH_DIGITS}) AS chunk
            FROM assigned GROUP BY bound, number"""
        )
        summary.stages["dedupe"] = time.monotonic() - clock
        clock = time.monotonic()
        summary.chunks = _write_outputs(
            con.sql(
                """SELECT c.checksum, c.status, c.reason, n.chunk FROM classified c
                LEFT JOIN assigned a USING (line) LEFT JOIN named n USING (bound, number) ORDER BY c.line"""
            ),
            sorted(parts.glob("part-*.parquet")),
            drop,
            manifest,
            chunk_dir,
        )
        summary.stages["write"] = time.monotonic() - clock
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


def _write_outputs(result, parts: list[Path], drop: str, manifest: Path, chunk_dir: Path) -> list[str]:
    """One ordered pass over the parts beside the (status, reason, chunk) rows of the same records: the
    manifest rows, and each queued record appended to its chunk FASTA. A chunk's records are one slice of
    an Arrow buffer per part: no Python loop per record. Returns the chunk names in order of first use."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from atlas.tables import MANIFEST

    batches = _arrow_reader(result)
    pending: list = []  # classified rows read but not yet matched to a part
    pending_rows = 0
    chunks: list[str] = []
    handles: dict[str, object] = {}  # bound prefix ("L0064") -> (chunk name, open file)
    waiting: list = []  # manifest rows not yet written
    waiting_rows = 0
    try:
        with pq.ParquetWriter(manifest, MANIFEST, compression="zstd", compression_level=1) as writer:
            for path in parts:
                part = pq.read_table(path)
                if not part.num_rows:  # the one part of an empty drop
                    continue
                while pending_rows < part.num_rows:
                    batch = batches.read_next_batch()
                    pending.append(batch)
                    pending_rows += batch.num_rows
                rows = pa.Table.from_batches(pending).combine_chunks()
                mine, rest = rows.slice(0, part.num_rows), rows.slice(part.num_rows)
                pending, pending_rows = rest.to_batches(), rest.num_rows
                chunk = mine.column("chunk")
                columns = {
                    "id": part.column("id"),
                    "drop": pa.repeat(pa.scalar(drop), part.num_rows),
                    "checksum": mine.column("checksum"),
                    "status": mine.column("status"),
                    "reason": mine.column("reason"),
                    "chunk": chunk,
                }
                columns.update({name: part.column(name) for name in MANIFEST.names if name not in columns})
                waiting.append(pa.table([columns[name] for name in MANIFEST.names], schema=MANIFEST))
                waiting_rows += part.num_rows
                if waiting_rows >= ROW_GROUP:  # row groups of ROW_GROUP rows whatever the block size
                    ready = pa.concat_tables(waiting).combine_chunks()
                    whole = ready.num_rows // ROW_GROUP * ROW_GROUP
                    writer.write_table(ready.slice(0, whole), row_group_size=ROW_GROUP)
                    waiting, waiting_rows = [ready.slice(whole)], ready.num_rows - whole

                queued = pc.is_valid(chunk)
                if not pc.any(queued).as_py():
                    continue
                names = pc.filter(chunk, queued).combine_chunks().dictionary_encode()
                texts = pc.binary_join_element_wise(
                    b">",
                    pc.filter(part.column("id"), queued).cast(pa.binary()),
                    b"\n",
                    pc.filter(part.column("sequence"), queued),
                    b"\n",
                    b"",
                ).combine_chunks()
                codes = names.indices.to_numpy(zero_copy_only=False)
                for code, name in enumerate(names.dictionary.to_pylist()):
                    selected = pc.take(texts, pa.array(np.flatnonzero(codes == code)))
                    if selected.null_count:
                        raise RuntimeError(f"{path}: a queued record has no sequence")  # cannot happen
                    prefix = name.split("-", 1)[0]
                    if prefix not in handles or handles[prefix][0] != name:
                        if prefix in handles:
                            handles.pop(prefix)[1].close()
                        handles[prefix] = (name, open(chunk_dir / f"{name}.fasta", "wb"))  # noqa: SIM115
                        chunks.append(name)
                    _, offsets, data = selected.buffers()
                    offsets = memoryview(offsets).cast("i")[selected.offset :]
                    handles[prefix][1].write(memoryview(data)[offsets[0] : offsets[len(selected)]])
            if waiting_rows:
                writer.write_table(pa.concat_tables(waiting).combine_chunks(), row_group_size=ROW_GROUP)
    finally:
        for _, handle in handles.values():
            handle.close()
    return sorted(chunks)


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
    own, workers = (
        resource.getrusage(who).ru_maxrss >> 10 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    lines.append(f"  peak RSS: {own} MiB in this process, {workers} MiB in the largest parsing worker")
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
