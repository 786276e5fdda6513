"""Streaming protein FASTA reading (plain or gzip), sequence normalisation and validation, the checksums and
the header metadata.

Reading
    `iter_blocks(path)` reads the file in large blocks (gzip through ISA-L, several times zlib's speed) and
    cuts them at record boundaries (`\\n>`), so that whole blocks can be parsed elsewhere (the split parses
    them in worker threads; for a plain file it uses `iter_plain_blocks`: positioned reads, no copies, and
    NUL bytes, invalid UTF-8 and bare CRs left for its parser to flag and `check_block_text` to name);
    `parse_block` cuts one block into records; `read_fasta(path)` yields one `FastaRecord` at a time.
    Memory is bounded by the block size, whatever the size of the file: with
    `max_residues`, a record longer than that is not buffered but streamed through its checksums and
    returned as a `SkippedRecord` (so a 1 GiB record in a 1 MB gzip costs no more memory than a short one).
    gzip is recognised by its magic bytes, not by the file name (multi-member gzip and bgzip included); a
    pipe is read like a file (it has no size, so no progress is reported). A file that is not FASTA raises
    `FastaFormatError` naming the file, the line, the byte offset (of the decompressed text for gzip), the
    record where there is one, and the reason: first non-blank line not a `>` header, NUL bytes (binary
    data), invalid UTF-8, bare CR line ends, corrupt or truncated gzip, bzip2/xz/zstd compression
    (unsupported: recompress with gzip). Headers are UTF-8 (`>prot_ü_α some description` is fine).

Normalisation (what `read_fasta` returns as `sequence`)
    upper case; whitespace anywhere in sequence lines removed (spaces, tabs, CRLF line ends); one terminal
    `*` removed (Prodigal and other gene callers end every protein with the stop codon `*`). The header's
    first whitespace-separated token is the `id`, the rest its `description`.

Alphabet (what `check_sequence` accepts)
    ESMFold folds the 20 standard amino acids ACDEFGHIKLMNPQRSTVWY. The other letters of A-Z
    (X, B, Z, J, U, O: unknown, ambiguous Asx/Glx/Xle, selenocysteine, pyrrolysine) are accepted and folded as
    the unknown residue X, which is what ESMFold itself does (transformers maps every letter outside the
    standard 20 to X). Anything else (digits, gap characters `-` and `.`, an internal stop codon `*`, other
    punctuation, non-ASCII letters) rejects the record, as do an empty sequence, a sequence made only of
    unknown residues (no structure can be predicted from it), a length outside [min_length, max_length], and
    a nucleotide sequence: at least NUCLEOTIDE_MIN_LENGTH residues of which >= 90 % of the first
    NUCLEOTIDE_WINDOW are A, C, G, T, U or N (ACGT are amino-acid letters too, so DNA would otherwise pass;
    no record of the real proteomes in tests/data comes near: their highest share is about 50 %).

Checksums and header metadata (manifest columns)
    `sequence_checksum`: MD5 hex of the normalised sequence. `crc64_hex`: the CRC64 of UniProt, MGnify and the
    ESM Atlas (ISO polynomial, reflected, zero init; Biopython's `Bio.SeqUtils.CheckSum.crc64` gives the same
    value as `CRC-` + these 16 hex digits). `header_metadata(description)`: the `KEY=value` fields of the
    header (UniProt `OS=Escherichia coli (strain K12) OX=83333`, Prodigal `ID=1_1;partial=10`, MGnify
    `PL=00 FL=1 CR=0`: a value runs up to the next ` KEY=`, `;` or the end) and `is_fragment`: MGnify `FL=0`
    true / `FL=1` false, Prodigal `partial=` other than `00` true / `00` false, UniProt `(Fragment)` in the
    name true, else None (the header does not say).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anycrc

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN_RESIDUES = "BJOUXZ"  # the rest of A-Z: folded as X
NUCLEOTIDE_RESIDUES = "ACGTUN"
NUCLEOTIDE_SHARE = 0.9
NUCLEOTIDE_WINDOW = 64  # residues looked at: enough to tell, and a small bounded cost per record
NUCLEOTIDE_MIN_LENGTH = 30  # shorter peptides are too short to tell
BLOCK_SIZE = 1 << 24  # bytes read at a time, and about the size of the blocks handed out
GZIP_PIECE = 1 << 17  # decompressed at a time: a gzip error can then say how far the text went
BOUNDARY_SLACK = 1 << 16  # read past a block's size, where the next record most likely starts

WHITESPACE = b" \t\r\n\v\f"  # what bytes.split() splits on, and normalise removes
_UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNKNOWN = UNKNOWN_RESIDUES.encode()
_NUCLEOTIDES = NUCLEOTIDE_RESIDUES.encode()
_OTHER_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
# UniProt/MGnify CRC64: ISO 3309 polynomial, reflected, init 0, no final xor (as Biopython's crc64).
_CRC64 = anycrc.CRC(width=64, poly=0x1B, init=0, refin=True, refout=True, xorout=0)
# KEY=value: a value runs to the next " KEY=", ";" or the end (UniProt's OS= value holds spaces).
_HEADER_FIELD = re.compile(
    r"(?:^|(?<=[\s;]))([A-Za-z_][A-Za-z0-9_.]*)=(.*?)\s*(?=;|\s+[A-Za-z_][A-Za-z0-9_.]*=|$)"
)


class FastaFormatError(ValueError):
    """The file is not a readable FASTA file; the message names the file, where it broke and why."""


@dataclass(frozen=True)
class FastaRecord:
    id: str  # first whitespace-separated token of the header
    description: str  # rest of the header
    sequence: str  # normalised residues: upper case, no whitespace, no terminal '*'
    line: int  # 1-based line number of the header
    offset: int = 0  # byte offset of the header's '>' (in the decompressed text for gzip)


@dataclass(frozen=True)
class Block:
    """Whole records: `data` runs from a header's '>' to the end of a record (its last newline dropped)."""

    data: bytes | memoryview
    line: int  # line number of data[0]
    offset: int  # byte offset of data[0] (of the decompressed text for gzip)


@dataclass(frozen=True)
class SkippedRecord:
    """A record longer than the reader's `max_residues`: streamed through its checksums, never held whole."""

    id: bytes
    description: bytes
    length: int  # normalised residues
    checksum: str  # MD5 hex
    crc64: str
    line: int
    offset: int


def sequence_checksum(sequence: str | bytes) -> str:
    """docs/SPEC.md: MD5 hex digest of the upper-case sequence."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii")
    return hashlib.md5(sequence.upper()).hexdigest()


def crc64_hex(sequence: bytes) -> str:
    """CRC64 of UniProt/MGnify as 16 upper-case hex digits (Biopython's crc64 is `CRC-` + these)."""
    return f"{_CRC64.calc(sequence):016X}"


def crc64_table():
    """The byte table of the reflected CRC64 above (poly 0x1B reflected is 0xD800000000000000)."""
    import numpy as np

    table = np.arange(256, dtype=np.uint64)
    for _ in range(8):
        table = np.where(
            table & np.uint64(1),
            (table >> np.uint64(1)) ^ np.uint64(0xD800000000000000),
            table >> np.uint64(1),
        )
    return table


def normalise(body: bytes) -> bytes:
    """Upper case, whitespace removed, one terminal stop codon '*' removed (module docstring)."""
    sequence = body.translate(_UPPER, WHITESPACE)
    return sequence[:-1] if sequence[-1:] == b"*" else sequence


def header_metadata(description: str) -> tuple[list[tuple[str, str]], bool | None]:
    """The header's KEY=value fields (in order; a repeated key keeps its first value) and what the header
    says about the sequence being a fragment (module docstring), None when it does not say."""
    fields: dict[str, str] = {}
    for key, value in _HEADER_FIELD.findall(description):
        fields.setdefault(key, value)
    if "FL" in fields and fields["FL"] in ("0", "1"):
        fragment: bool | None = fields["FL"] == "0"
    elif "partial" in fields:
        fragment = fields["partial"] != "00"
    elif "(Fragment)" in description or "(Fragments)" in description:
        fragment = True
    else:
        fragment = None
    return list(fields.items()), fragment


def check_sequence(sequence: str | bytes, min_length: int, max_length: int) -> str | None:
    """Why a normalised sequence cannot be folded (a human-readable reason), or None when it can."""
    if isinstance(sequence, str):
        sequence = sequence.encode("utf-8", "backslashreplace")
    if not sequence:
        return "empty sequence"
    invalid = sequence.translate(None, _LETTERS)
    if invalid:
        return _invalid_reason(sequence, invalid)
    length = len(sequence)
    if length < min_length:
        return f"too short: {length} residues < min_length {min_length}"
    if length > max_length:
        return f"too long: {length} residues > max_length {max_length}"
    if not sequence.translate(None, _UNKNOWN):
        return f"no standard residue: all {length} residues are unknown ({'/'.join(UNKNOWN_RESIDUES)})"
    if is_nucleotide(sequence):
        window = sequence[:NUCLEOTIDE_WINDOW]
        share = 100 * (len(window) - len(window.translate(None, _NUCLEOTIDES))) // len(window)
        return (
            f"nucleotide sequence: {share}% of the first {len(window)} residues are "
            f"{'/'.join(NUCLEOTIDE_RESIDUES)}; a protein FASTA is expected"
        )
    return None


def is_nucleotide(sequence: bytes) -> bool:
    """At least NUCLEOTIDE_MIN_LENGTH residues, NUCLEOTIDE_SHARE of the first NUCLEOTIDE_WINDOW in ACGTUN."""
    if len(sequence) < NUCLEOTIDE_MIN_LENGTH:
        return False
    window = sequence[:NUCLEOTIDE_WINDOW]
    return len(window.translate(None, _NUCLEOTIDES)) <= (1 - NUCLEOTIDE_SHARE) * len(window)


def _invalid_reason(sequence: bytes, invalid: bytes) -> str:
    characters = sorted(set(invalid))
    first = min(sequence.index(bytes([c])) for c in characters) + 1
    if characters == [ord("*")]:
        return f"internal stop codon '*' at residue {first} (only a terminal '*' is removed)"
    shown = ", ".join(repr(chr(c)) for c in characters[:10]) + (", ..." if len(characters) > 10 else "")
    return (
        f"invalid character{'s' if len(characters) > 1 else ''} {shown} (first at residue {first}); "
        "residues must be letters A-Z"
    )


def read_fasta(path: str | Path) -> Iterator[FastaRecord]:
    """Stream the records of a plain or gzip FASTA file, normalised (module docstring); no validation."""
    for name, description, sequence, line, offset in iter_raw_records(path):
        yield FastaRecord(name.decode(), description.decode(), sequence.decode(), line, offset)


def open_fasta(path: str | Path) -> tuple[BinaryIO, BinaryIO, bool]:
    """Open for binary reading: (stream of text bytes, underlying raw file, is_gzip). Raises FastaFormatError
    for a missing file, a directory or a compression other than gzip."""
    from isal import igzip

    path = Path(path)
    try:
        raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed there
    except FileNotFoundError:
        raise FastaFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FastaFormatError(f"{path}: is a directory, not a FASTA file") from None
    except PermissionError:
        raise FastaFormatError(f"{path}: permission denied") from None
    magic = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    if magic.startswith(b"\x1f\x8b"):
        return igzip.GzipFile(fileobj=raw, mode="rb"), raw, True
    for prefix, kind in _OTHER_COMPRESSION.items():
        if magic.startswith(prefix) and (kind != "bzip2" or magic[3:4].isdigit()):
            raw.close()
            raise FastaFormatError(f"{path}: {kind}-compressed; only plain or gzip FASTA is supported")
    return raw, raw, False


def iter_raw_records(
    path: str | Path, progress: Callable[[int], None] | None = None, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[bytes, bytes, bytes, int, int]]:
    """Stream records as tuples (id, description, normalised sequence, line, offset), all bytes but the
    numbers. `progress(n)` is called with the number of bytes of the file (compressed bytes for gzip)
    consumed since the previous call."""
    for block in iter_blocks(path, progress, block_size):
        yield from parse_block(block, path)


def parse_block(block: Block, path: str | Path) -> Iterator[tuple[bytes, bytes, bytes, int, int]]:
    """The records of one block, as `iter_raw_records` yields them. Raises FastaFormatError for invalid
    UTF-8 or a bare CR in a header, naming the record."""
    if not isinstance(block.data, bytes):  # a memoryview from iter_plain_blocks
        block = Block(bytes(block.data), block.line, block.offset)
    data = block.data
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as error:
            what = f"invalid UTF-8 byte 0x{data[error.start]:02x}"
            raise _record_error(path, block, error.start, what) from None
    line, offset = block.line, block.offset
    upper, whitespace = _UPPER, WHITESPACE
    for piece in data[1:].split(b"\n>"):
        header, _, body = piece.partition(b"\n")
        if b"\r" in header:
            header = header.rstrip()
            if b"\r" in header:
                raise _record_error(
                    path,
                    block,
                    offset - block.offset,
                    "a carriage return inside a header: old Mac (CR-only) line ends are not supported",
                )
        fields = header.split(None, 1)
        sequence = body.translate(upper, whitespace)
        if sequence[-1:] == b"*":
            sequence = sequence[:-1]
        yield (
            fields[0] if fields else b"",
            fields[1].rstrip() if len(fields) > 1 else b"",
            sequence,
            line,
            offset,
        )
        line += piece.count(b"\n") + 1
        offset += len(piece) + 2


def _record_error(path: str | Path, block: Block, index: int, what: str) -> FastaFormatError:
    """An error at block.data[index], naming the record that holds it, its line and byte offset."""
    data = block.data
    start = data.rfind(b"\n>", 0, index + 1) + 1  # 0 when in the first record
    header = data[start + 1 : data.find(b"\n", start) if b"\n" in data[start:] else len(data)]
    name = header.split(None, 1)[0].decode("utf-8", "backslashreplace") if header.split() else ""
    line = block.line + data.count(b"\n", 0, index)
    header_line = block.line + data.count(b"\n", 0, start)
    return FastaFormatError(
        f"{path}: {what} at line {line}, byte offset {block.offset + index}, in record {name!r} "
        f"(header at line {header_line})"
    )


class _Reader:
    """Decompressed text in pieces, with the counts that error messages need."""

    def __init__(self, path: Path, progress: Callable[[int], None] | None, block_size: int):
        self.path = path
        self.stream, self.raw, self.is_gzip = open_fasta(path)
        self.where = " of the decompressed text" if self.is_gzip else ""
        self.progress = progress
        self.block_size = block_size
        self.bytes_read = 0
        self.raw_position = 0
        # A pipe can be read only once: its newlines are counted as they pass, for the error messages that
        # a file gets by reading itself again (which costs nothing until an error).
        self.rereadable = self.raw.seekable()
        self.newlines_read = 0

    def read(self) -> bytes:
        from isal import isal_zlib

        if self.is_gzip:
            # read1 pieces, so that a gzip error can say how far the text went before it.
            pieces: list[bytes] = []
            wanted = self.block_size
            try:
                while wanted > 0:
                    piece = self.stream.read1(min(wanted, GZIP_PIECE))
                    if not piece:
                        break
                    pieces.append(piece)
                    wanted -= len(piece)
            except (EOFError, OSError, zlib.error, isal_zlib.error) as error:
                kind = "truncated" if isinstance(error, EOFError) else "corrupt"
                if self.rereadable:
                    good, lines = _readable_gzip_text(self.path)
                    near = f"near compressed byte offset {self.raw.tell()}"
                else:
                    good = self.bytes_read + sum(map(len, pieces))
                    lines = self.newlines_read + sum(piece.count(b"\n") for piece in pieces)
                    near = "in a pipe"
                raise FastaFormatError(
                    f"{self.path}: {kind} gzip data {near}, after "
                    f"{lines} complete lines ({good} bytes{self.where}): {error}"
                ) from None
            data = b"".join(pieces)
        else:
            data = self.stream.read(self.block_size)
        if self.progress is not None and self.rereadable:  # a pipe has no position (nor a size to show)
            position = self.raw.tell()
            self.progress(position - self.raw_position)
            self.raw_position = position
        nul = data.find(b"\x00")
        if nul >= 0:
            line = self._lines_before(self.bytes_read) + data.count(b"\n", 0, nul) + 1
            raise _nul_error(self.path, line, self.bytes_read + nul, self.where)
        self.bytes_read += len(data)
        if not self.rereadable:
            self.newlines_read += data.count(b"\n")
        return data

    def _lines_before(self, size: int) -> int:
        """Newlines in the first `size` bytes of the text: read again (_lines_in_text), or as counted for a
        pipe."""
        return _lines_in_text(self.path, size) if self.rereadable else self.newlines_read

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def _lines_in_text(path: Path, size: int) -> int:
    """Newlines in the first `size` bytes of a file's text, decompressed for gzip (an error path: the file is
    read again rather than counted on every read)."""
    stream, raw, _ = open_fasta(path)
    lines = 0
    try:
        while size > 0 and (piece := stream.read(min(size, GZIP_PIECE))):
            lines += piece.count(b"\n")
            size -= len(piece)
    finally:
        stream.close()
        raw.close()
    return lines


def _readable_gzip_text(path: Path) -> tuple[int, int]:
    """(bytes, newlines) of the text that a broken gzip file yields before its error (the error path only:
    ISA-L decompresses ahead in large pieces, so its own count says less)."""
    good = lines = 0
    with gzip.open(path, "rb") as stream:
        try:
            while piece := stream.read1(GZIP_PIECE):
                good += len(piece)
                lines += piece.count(b"\n")
        except (EOFError, OSError, zlib.error):
            pass
    return good, lines


def iter_blocks(
    path: str | Path,
    progress: Callable[[int], None] | None = None,
    block_size: int = BLOCK_SIZE,
    max_residues: int | None = None,
) -> Iterator[Block | SkippedRecord]:
    """Cut the text into blocks of whole records (about `block_size` bytes each, or one record when longer).
    With `max_residues`, a record with more residues than that is streamed and yielded as a SkippedRecord,
    so memory stays about 2 x block_size whatever the records."""
    path = Path(path)
    reader = _Reader(path, progress, block_size)
    try:
        yield from _cut_blocks(reader, max_residues)
    finally:
        reader.close()


def _cut_blocks(reader: _Reader, max_residues: int | None) -> Iterator[Block | SkippedRecord]:
    line = 1  # line number of buf[0]
    offset = 0  # byte offset of buf[0]
    buf = bytearray()  # from the '>' of the first record not yet yielded
    unsearched = 0  # buf[unsearched:] has not been searched for a record boundary
    started = False
    # A record is measured once it alone fills this much: short records never pay for it.
    measure_at = reader.block_size if max_residues is None else max(reader.block_size, 4 * max_residues)
    while True:
        data = reader.read()
        eof = not data
        search_from = max(0, unsearched - 1)
        buf += data
        if not started:
            stripped = len(buf.lstrip(WHITESPACE))
            if not stripped:
                if eof:
                    return
                continue
            skipped = len(buf) - stripped
            line += buf.count(b"\n", 0, skipped)
            offset += skipped
            del buf[:skipped]
            if buf[0] != ord(">"):
                raise _not_fasta_error(reader.path, line, offset, reader.where, bytes(buf[:40]))
            started, search_from = True, 0
        end = len(buf) if eof else buf.rfind(b"\n>", search_from)
        if end == -1:
            unsearched = len(buf)
            if max_residues is not None and len(buf) >= measure_at:
                skipped = _skip_if_too_long(reader, buf, line, offset, max_residues)
                if skipped is not None:
                    record, rest, lines = skipped
                    yield record
                    if not rest:
                        return
                    # rest starts at the next record's '>'
                    line += lines
                    offset = reader.bytes_read - len(rest)
                    buf = bytearray(rest)
                    unsearched = 0
            continue  # a record longer than what is buffered: read on
        if end > 0:
            with memoryview(buf) as view:
                block = bytes(view[:end])  # one copy (a slice of the bytearray would be a second)
            yield Block(block, line, offset)
            line += _newlines(block) + 1
            offset += end + 1
        del buf[: end + 1]
        unsearched = len(buf)
        if eof:
            return


def _nul_error(path: Path, line: int, offset: int, where: str) -> FastaFormatError:
    return FastaFormatError(
        f"{path}: not a text FASTA file: NUL byte (binary data) at line {line}, byte offset {offset}{where}"
    )


def _not_fasta_error(path: Path, line: int, offset: int, where: str, head: bytes) -> FastaFormatError:
    text = head[:40].split(b"\n", 1)[0].decode("utf-8", "backslashreplace")
    return FastaFormatError(
        f"{path}: not a FASTA file: line {line} (byte offset {offset}{where}) "
        f"should be a '>' header line but starts with {text!r}"
    )


def iter_plain_blocks(
    path: str | Path,
    progress: Callable[[int], None] | None = None,
    block_size: int = BLOCK_SIZE,
    max_residues: int | None = None,
) -> Iterator[Block | SkippedRecord]:
    """iter_blocks for a plain, regular file, with less work: each block is one positioned read (os.pread),
    cut at the record boundary after `block_size` bytes without a copy (`data` is a memoryview of what was
    read), and only its newlines are counted here (for the next block's line number). NUL bytes, invalid
    UTF-8 and bare CRs are left to whoever parses the block: `check_block_text` names them. A record longer
    than max_residues is streamed through its checksums, as iter_blocks does."""
    path = Path(path)
    with open(path, "rb") as handle:
        fd = handle.fileno()
        size = os.fstat(fd).st_size
        pos, line = 0, 1
        while pos < size:  # blank lines before the first record
            piece = os.pread(fd, GZIP_PIECE, pos)
            blank = len(piece) - len(piece.lstrip(WHITESPACE))
            line += piece.count(b"\n", 0, blank)
            pos += blank
            if blank < len(piece):
                if piece[blank] != ord(">"):
                    if (nul := piece.find(b"\x00", blank)) >= 0:
                        raise _nul_error(path, line + piece.count(b"\n", blank, nul), pos - blank + nul, "")
                    raise _not_fasta_error(path, line, pos, "", piece[blank:])
                break
        if progress is not None:
            progress(pos)
        measure_at = block_size if max_residues is None else max(block_size, 4 * max_residues)
        while pos < size:
            data = os.pread(fd, block_size + BOUNDARY_SLACK, pos)
            while True:
                if pos + len(data) >= size:
                    end = len(data)
                    break
                end = data.find(b"\n>", block_size - 1)  # the block is data[:end], the next record at end + 1
                if end >= 0:
                    break
                end = data.rfind(b"\n>")  # a record runs past what was read: the block stops before it
                if end >= 0:
                    break
                if max_residues is not None and len(data) >= measure_at:
                    reader = _PositionalReader(path, fd, pos + len(data), block_size)
                    skipped = _skip_if_too_long(reader, bytearray(data), line, pos, max_residues)
                    if skipped is not None:
                        record, rest, lines = skipped
                        yield record
                        following = size if rest is None else reader.bytes_read - len(rest)
                        if progress is not None:
                            progress(following - pos)
                        line, pos = line + lines, following
                        break
                data += os.pread(fd, block_size, pos + len(data))  # a long record: read on
            if end < 0:  # a record was skipped
                continue
            block = memoryview(data)[:end]
            yield Block(block, line, pos)
            line += _newlines(block) + 1
            if progress is not None:
                progress(min(end + 1, len(data)))
            pos += end + 1


def _newlines(data) -> int:
    """The newlines in a block of text: numpy's vectorised compare, a piece at a time into one small buffer
    that stays in the cache (0.09 CPU-s per GB, bytes.count 0.37; comparing a whole block at once made a
    block-sized temporary, fresh memory for every block)."""
    import numpy as np

    text = np.frombuffer(data, np.uint8)
    found = np.empty(min(len(text), _NEWLINE_PIECE), np.bool_)
    count = 0
    for start in range(0, len(text), _NEWLINE_PIECE):
        piece = text[start : start + _NEWLINE_PIECE]
        count += int(np.count_nonzero(np.equal(piece, 10, out=found[: len(piece)])))
    return count


_NEWLINE_PIECE = 1 << 18


class _PositionalReader:
    """What _skip_if_too_long reads a record through: the file from `start` on, by positioned reads."""

    def __init__(self, path: Path, fd: int, start: int, block_size: int):
        self.path, self.fd, self.bytes_read, self.block_size = path, fd, start, block_size
        self.where = ""

    def read(self) -> bytes:
        data = os.pread(self.fd, self.block_size, self.bytes_read)
        if (nul := data.find(b"\x00")) >= 0:
            line = _lines_in_text(self.path, self.bytes_read) + data.count(b"\n", 0, nul) + 1
            raise _nul_error(self.path, line, self.bytes_read + nul, "")
        self.bytes_read += len(data)
        return data


def check_block_text(block: Block, path: str | Path) -> None:
    """Raise the FastaFormatError that a block's text deserves, if any: a NUL byte, invalid UTF-8, a bare CR
    in a header (for the blocks of iter_plain_blocks, which leaves these to the parser to find)."""
    block = Block(bytes(block.data), block.line, block.offset)
    data = block.data
    if (nul := data.find(b"\x00")) >= 0:
        raise _nul_error(Path(path), block.line + data.count(b"\n", 0, nul), block.offset + nul, "")
    for _ in parse_block(block, path):
        pass


def _skip_if_too_long(
    reader: _Reader, buf: bytearray, line: int, offset: int, max_residues: int
) -> tuple[SkippedRecord, bytes | None, int] | None:
    """`buf` holds one incomplete record. If it already has more than max_residues residues, read the rest of
    it through MD5 and CRC64 without keeping it: (the record, the text after it or None at the end of the
    file, the lines the record spans). Else None."""
    header_end = buf.find(b"\n")
    if header_end == -1:
        raise FastaFormatError(
            f"{reader.path}: line {line} (byte offset {offset}{reader.where}): a header line longer than "
            f"{len(buf)} bytes"
        )
    residues = bytes(buf[header_end + 1 :]).translate(_UPPER, WHITESPACE)
    if len(residues) <= max_residues + 1:  # +1: a terminal '*' is not a residue
        return None
    header = bytes(buf[1:header_end]).strip()
    try:
        header.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FastaFormatError(
            f"{reader.path}: invalid UTF-8 byte 0x{header[error.start]:02x} in the header at line {line}, "
            f"byte offset {offset}{reader.where}"
        ) from None
    fields = header.split(None, 1)
    md5 = hashlib.md5()
    crc = 0
    length = 0
    pending = b""  # the last residue seen: a terminal '*' is dropped, so it waits for what follows

    def add(normalised: bytes) -> None:
        nonlocal crc, length, pending
        if not normalised:
            return
        done = pending + normalised[:-1]
        md5.update(done)
        crc = _CRC64.calc(done, crc) if crc else _CRC64.calc(done)
        length += len(done)
        pending = normalised[-1:]

    add(residues)
    lines = buf.count(b"\n")
    last = buf[-1:]
    rest: bytes | None = None
    while True:
        data = reader.read()
        if not data:
            break
        if last == b"\n" and data[:1] == b">":  # the boundary '\n>' straddles two reads
            rest = data
            break
        end = data.find(b"\n>")
        if end == -1:
            add(data.translate(_UPPER, WHITESPACE))
            lines += data.count(b"\n")
            last = data[-1:]
            continue
        add(data[:end].translate(_UPPER, WHITESPACE))
        lines += data.count(b"\n", 0, end) + 1
        rest = data[end + 1 :]
        break
    if pending != b"*":
        md5.update(pending)
        crc = _CRC64.calc(pending, crc) if crc else _CRC64.calc(pending)
        length += len(pending)
    record = SkippedRecord(
        id=fields[0] if fields else b"",
        description=fields[1] if len(fields) > 1 else b"",
        length=length,
        checksum=md5.hexdigest(),
        crc64=f"{crc:016X}",
        line=line,
        offset=offset,
    )
    return record, rest, lines
