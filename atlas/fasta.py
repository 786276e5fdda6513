"""Streaming protein FASTA reading (plain or gzip), sequence normalisation and validation, and the checksum.

Reading
    `read_fasta(path)` yields one `FastaRecord` at a time; memory is bounded by the largest record, whatever
    the size of the file. gzip is recognised by its magic bytes, not by the file name (multi-member gzip and
    bgzip included). The file is read in large blocks that are cut into records at `\\n>`; a file that is not
    FASTA raises `FastaFormatError` naming the file, the line, the byte offset (of the decompressed text for
    gzip) and the reason: first non-blank line not a `>` header, NUL or non-ASCII bytes (binary data), bare CR
    line ends, corrupt or truncated gzip, bzip2/xz/zstd compression (unsupported: recompress with gzip).

Normalisation (what `read_fasta` returns as `sequence`)
    upper case; whitespace anywhere in sequence lines removed (spaces, tabs, CRLF line ends); one terminal
    `*` removed (Prodigal and other gene callers end every protein with the stop codon `*`). The header's
    first whitespace-separated token is the `id`, the rest its `description`.

Alphabet (what `check_sequence` accepts)
    ESMFold folds the 20 standard amino acids ACDEFGHIKLMNPQRSTVWY. The other letters of A-Z
    (X, B, Z, J, U, O: unknown, ambiguous Asx/Glx/Xle, selenocysteine, pyrrolysine) are accepted and folded as
    the unknown residue X, which is what ESMFold itself does (transformers maps every letter outside the
    standard 20 to X). Anything else (digits, gap characters `-` and `.`, an internal stop codon `*`, other
    punctuation) rejects the record, as do an empty sequence, a sequence made only of unknown residues (no
    structure can be predicted from it), and a length outside [min_length, max_length].
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

STANDARD_RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
UNKNOWN_RESIDUES = "BJOUXZ"  # the rest of A-Z: folded as X
BLOCK_SIZE = 1 << 22  # bytes read at a time

_WHITESPACE = b" \t\r\n\v\f"
_UPPER = bytes.maketrans(b"abcdefghijklmnopqrstuvwxyz", b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNKNOWN = UNKNOWN_RESIDUES.encode()
_BINARY = re.compile(rb"[\x00\x80-\xff]")
_OTHER_COMPRESSION = {
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


class FastaFormatError(ValueError):
    """The file is not a readable FASTA file; the message names the file, where it broke and why."""


@dataclass(frozen=True)
class FastaRecord:
    id: str  # first whitespace-separated token of the header
    description: str  # rest of the header
    sequence: str  # normalised residues: upper case, no whitespace, no terminal '*'
    line: int  # 1-based line number of the header
    offset: int = 0  # byte offset of the header's '>' (in the decompressed text for gzip)


class RawRecord(NamedTuple):
    """A record as bytes, the fast path of the split stage: `iter_raw_records` yields plain tuples in this
    field order (a NamedTuple per record would cost more than the parsing)."""

    id: bytes
    description: bytes
    sequence: bytes  # normalised as in FastaRecord
    line: int
    offset: int


def sequence_checksum(sequence: str | bytes) -> str:
    """docs/SPEC.md: MD5 hex digest of the upper-case sequence."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii")
    return hashlib.md5(sequence.upper()).hexdigest()


def normalise_sequence(body: bytes) -> bytes:
    """Upper case, all whitespace removed, one terminal stop codon '*' removed."""
    sequence = body.translate(_UPPER, _WHITESPACE)
    return sequence[:-1] if sequence.endswith(b"*") else sequence


def check_sequence(sequence: str | bytes, min_length: int, max_length: int) -> str | None:
    """Why a normalised sequence cannot be folded (a human-readable reason), or None when it can."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", "backslashreplace")
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
    return None


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
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, True
    for prefix, kind in _OTHER_COMPRESSION.items():
        if magic.startswith(prefix) and (kind != "bzip2" or magic[3:4].isdigit()):
            raw.close()
            raise FastaFormatError(f"{path}: {kind}-compressed; only plain or gzip FASTA is supported")
    return raw, raw, False


def iter_raw_records(
    path: str | Path, progress: Callable[[int], None] | None = None, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[bytes, bytes, bytes, int, int]]:
    """Stream records as tuples in `RawRecord` order (bytes, normalised sequence). `progress(n)` is called
    with the number of bytes of the file (compressed bytes for gzip) consumed since the previous call."""
    path = Path(path)
    stream, raw, is_gzip = open_fasta(path)
    where = " of the decompressed text" if is_gzip else ""
    with raw, stream:
        line = 1  # line number of buf[0]
        offset = 0  # byte offset of buf[0]
        newlines_read = 0  # newlines in all bytes read so far
        bytes_read = 0
        raw_position = 0
        buf = bytearray()  # from the '>' of the first record not yet yielded; amortised appends
        started = False
        while True:
            if is_gzip:
                # read1 pieces, so that a gzip error can say how far the text went before it.
                pieces: list[bytes] = []
                wanted = block_size
                try:
                    while wanted > 0:
                        piece = stream.read1(wanted)
                        if not piece:
                            break
                        pieces.append(piece)
                        wanted -= len(piece)
                except (EOFError, OSError, zlib.error) as error:
                    kind = "truncated" if isinstance(error, EOFError) else "corrupt"
                    good = sum(map(len, pieces))
                    lines = newlines_read + sum(piece.count(b"\n") for piece in pieces)
                    raise FastaFormatError(
                        f"{path}: {kind} gzip data near compressed byte offset {raw.tell()}, after {lines} "
                        f"complete lines ({bytes_read + good} bytes{where}): {error}"
                    ) from None
                block = b"".join(pieces)
            else:
                block = stream.read(block_size)
            if progress is not None:
                position = raw.tell()
                progress(position - raw_position)
                raw_position = position
            if block and (not block.isascii() or b"\x00" in block):
                index = _BINARY.search(block).start()
                byte = block[index]
                what = "NUL byte (binary data)" if byte == 0 else f"non-ASCII byte 0x{byte:02x}"
                at_line = newlines_read + block.count(b"\n", 0, index) + 1
                raise FastaFormatError(
                    f"{path}: not a text FASTA file: {what} at line {at_line}, "
                    f"byte offset {bytes_read + index}{where}"
                )
            newlines_read += block.count(b"\n")
            bytes_read += len(block)
            eof = not block
            search_from = max(0, len(buf) - 1)
            buf += block
            if not started:
                stripped = len(buf.lstrip(_WHITESPACE))
                if not stripped:
                    if eof:
                        return
                    continue
                skipped = len(buf) - stripped
                line += buf.count(b"\n", 0, skipped)
                offset += skipped
                del buf[:skipped]
                if buf[0] != ord(">"):
                    text = bytes(buf[:40]).split(b"\n", 1)[0].decode("ascii", "backslashreplace")
                    raise FastaFormatError(
                        f"{path}: not a FASTA file: line {line} (byte offset {offset}{where}) should be a "
                        f"'>' header line but starts with {text!r}"
                    )
                started, search_from = True, 0
            end = len(buf) if eof else buf.rfind(b"\n>", search_from)
            if end == -1:
                continue  # a record longer than what is buffered: read on
            with memoryview(buf) as view:
                part = bytes(view[1:end])
            del buf[: end + 1]
            for piece in part.split(b"\n>"):
                header, _, body = piece.partition(b"\n")
                header = header.strip()
                if b"\r" in header:
                    raise FastaFormatError(
                        f"{path}: line {line} (byte offset {offset}{where}) holds a carriage return inside a "
                        "header: old Mac (CR-only) line ends are not supported"
                    )
                fields = header.split(None, 1)
                sequence = body.translate(_UPPER, _WHITESPACE)
                if sequence[-1:] == b"*":
                    sequence = sequence[:-1]
                yield (
                    fields[0] if fields else b"",
                    fields[1] if len(fields) > 1 else b"",
                    sequence,
                    line,
                    offset,
                )
                line += piece.count(b"\n") + 1
                offset += len(piece) + 2
            if eof:
                return
