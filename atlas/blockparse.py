"""One compiled pass (numba) that cuts a block of FASTA text into normalised records: the split's parser.

`parse_block_arrays(data)` takes a block of whole records as `atlas.fasta.iter_blocks` yields it (from a '>'
to the end of a record) and returns, in one pass over its bytes and with no Python step per record:

- `ids`, `descriptions`: bytes and int32 offsets (the header's first whitespace-separated token, and the
  rest with the whitespace around it trimmed, as `atlas.fasta.parse_block` cuts them);
- `residues`, `offsets`: the normalised sequences (atlas.fasta.normalise: upper case, whitespace removed, one
  terminal '*' removed), back to back;
- `lines`: each header's line, counted from the block's first line (0);
- `sequence_crc64`, `id_crc64`: the CRC64 of `atlas.fasta.crc64_hex`, slice-by-8;
- `unusual`: the records holding anything but the 20 standard residues, which need the per-record checks;
- `window_others`: per record, how many of its first NUCLEOTIDE_WINDOW residues are not A/C/G/T/U/N (the
  nucleotide rule of `atlas.fasta.is_nucleotide`).

Why compiled: the split must keep up with the disk, and every per-record Python step costs about a second
per 3.7 M records (a GB of MGnify proteins); numpy over a whole block still needed a dozen passes and a loop
per residue position for the CRC. Whitespace is atlas.fasta.WHITESPACE (what `bytes.split`, `normalise` use);
the caller checks UTF-8 and line ends first (atlas.fasta.parse_block's errors). MD5 stays with hashlib-
family C code per record: a hand-written MD5 would be no faster than 400 MB/s either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from atlas.fasta import NUCLEOTIDE_RESIDUES, NUCLEOTIDE_WINDOW, STANDARD_RESIDUES, WHITESPACE, crc64_table

# Byte classes, one bit each.
_STANDARD, _SPACE, _NUCLEOTIDE = 1, 2, 4


def _classes() -> np.ndarray:
    table = np.zeros(256, np.uint8)
    table[list(STANDARD_RESIDUES.encode())] |= _STANDARD
    table[list(WHITESPACE)] |= _SPACE
    table[list(NUCLEOTIDE_RESIDUES.encode())] |= _NUCLEOTIDE
    return table


def _slice_by_8(table: np.ndarray) -> np.ndarray:
    """Tables 0-7 of the slice-by-8 CRC: table k advances a byte's CRC by k more zero bytes."""
    tables = np.empty((8, 256), np.uint64)
    tables[0] = table
    for k in range(1, 8):
        tables[k] = (tables[k - 1] >> np.uint64(8)) ^ table[tables[k - 1] & np.uint64(255)]
    return tables


_CLASSES = _classes()
_CRC_TABLES = _slice_by_8(crc64_table())


@dataclass(frozen=True)
class BlockArrays:
    ids: np.ndarray
    id_offsets: np.ndarray
    descriptions: np.ndarray
    description_offsets: np.ndarray
    residues: np.ndarray
    offsets: np.ndarray
    lines: np.ndarray
    sequence_crc64: np.ndarray
    id_crc64: np.ndarray
    unusual: np.ndarray
    window_others: np.ndarray


def parse_block_arrays(data: bytes) -> BlockArrays:
    """The records of a block of whole records (module docstring); `data` starts with '>'."""
    if data[:1] != b">":
        raise ValueError("a block starts with a '>' header")
    if len(data) >= 1 << 31:
        raise ValueError("a block must be under 2 GiB (Arrow's 32-bit offsets)")
    text = np.frombuffer(data, np.uint8)
    return BlockArrays(*_parse(text, np.flatnonzero(text == 10), _CRC_TABLES, _CLASSES, NUCLEOTIDE_WINDOW))


def _compiled(function):
    """numba-compiled, cached beside the module (or in the user's cache) so that only the first run of an
    install compiles (a few seconds); where no cache folder is writable, compiled in each process."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(nogil=True, boundscheck=False)(function)


@_compiled
def _crc64(tables, data, start, end):  # pragma: no cover - compiled
    t0, t1, t2, t3 = tables[0], tables[1], tables[2], tables[3]
    t4, t5, t6, t7 = tables[4], tables[5], tables[6], tables[7]
    low = np.uint64(255)
    crc = np.uint64(0)
    i = start
    while i + 8 <= end:  # eight independent lookups per 8 bytes instead of a chain of eight
        c = crc
        crc = (
            t7[np.intp((c ^ np.uint64(data[i])) & low)]
            ^ t6[np.intp(((c >> np.uint64(8)) ^ np.uint64(data[i + 1])) & low)]
            ^ t5[np.intp(((c >> np.uint64(16)) ^ np.uint64(data[i + 2])) & low)]
            ^ t4[np.intp(((c >> np.uint64(24)) ^ np.uint64(data[i + 3])) & low)]
            ^ t3[np.intp(((c >> np.uint64(32)) ^ np.uint64(data[i + 4])) & low)]
            ^ t2[np.intp(((c >> np.uint64(40)) ^ np.uint64(data[i + 5])) & low)]
            ^ t1[np.intp(((c >> np.uint64(48)) ^ np.uint64(data[i + 6])) & low)]
            ^ t0[np.intp((c >> np.uint64(56)) ^ np.uint64(data[i + 7]))]
        )
        i += 8
    while i < end:
        crc = t0[np.intp((crc ^ np.uint64(data[i])) & low)] ^ (crc >> np.uint64(8))
        i += 1
    return crc


@_compiled
def _parse(data, newlines, tables, classes, window):  # pragma: no cover - compiled
    size = len(data)
    line_count = len(newlines) + 1
    count = 0
    for k in range(line_count):
        start = 0 if k == 0 else newlines[k - 1] + 1
        if start < size and data[start] == 62:  # '>'
            count += 1
    lines = np.empty(count, np.int64)
    offsets = np.empty(count + 1, np.int32)
    id_offsets = np.empty(count + 1, np.int32)
    description_offsets = np.empty(count + 1, np.int32)
    sequence_crc = np.empty(count, np.uint64)
    id_crc = np.empty(count, np.uint64)
    unusual = np.zeros(count, np.bool_)
    window_others = np.zeros(count, np.int64)
    residues = np.empty(size, np.uint8)
    ids = np.empty(size, np.uint8)
    descriptions = np.empty(size, np.uint8)
    offsets[0] = id_offsets[0] = description_offsets[0] = 0
    out = id_out = description_out = 0
    k = 0  # the line being read
    for record in range(count):
        lines[record] = k
        header = 0 if k == 0 else newlines[k - 1] + 1
        end = newlines[k] if k < line_count - 1 else size
        k += 1
        i = header + 1
        while i < end and classes[data[i]] & _SPACE:
            i += 1
        first = i
        while i < end and not classes[data[i]] & _SPACE:
            i += 1
        ids[id_out : id_out + i - first] = data[first:i]
        id_out += i - first
        id_offsets[record + 1] = id_out
        id_crc[record] = _crc64(tables, data, first, i)
        while i < end and classes[data[i]] & _SPACE:
            i += 1
        last = end
        while last > i and classes[data[last - 1]] & _SPACE:
            last -= 1
        descriptions[description_out : description_out + last - i] = data[i:last]
        description_out += last - i
        description_offsets[record + 1] = description_out
        start = out
        while k < line_count:  # the sequence lines, up to the next header
            begin = newlines[k - 1] + 1
            if begin < size and data[begin] == 62:
                break
            stop = newlines[k] if k < line_count - 1 else size
            residues[out : out + stop - begin] = data[begin:stop]
            out += stop - begin
            k += 1
        clean = True
        for j in range(start, out):
            if not classes[residues[j]] & _STANDARD:
                clean = False
                break
        if not clean:  # lower case, whitespace, a terminal '*' or other letters: normalise in place
            kept = start
            for j in range(start, out):
                byte = residues[j]
                if classes[byte] & _SPACE:
                    continue
                if 97 <= byte <= 122:
                    byte -= 32
                residues[kept] = byte
                kept += 1
            out = kept
            if out > start and residues[out - 1] == 42:  # '*'
                out -= 1
            for j in range(start, out):
                if not classes[residues[j]] & _STANDARD:
                    unusual[record] = True
                    break
        others = 0
        for j in range(start, min(out, start + window)):
            if not classes[residues[j]] & _NUCLEOTIDE:
                others += 1
        window_others[record] = others
        sequence_crc[record] = _crc64(tables, residues, start, out)
        offsets[record + 1] = out
    return (
        ids[:id_out].copy(),
        id_offsets,
        descriptions[:description_out].copy(),
        description_offsets,
        residues[:out],
        offsets,
        lines,
        sequence_crc,
        id_crc,
        unusual,
        window_others,
    )
