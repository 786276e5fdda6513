"""One compiled pass (numba) that cuts a block of FASTA text into normalised records: the split's parser.

`parse_block_arrays(data)` takes a block of whole records as `atlas.fasta.iter_blocks` yields it (from a '>'
to the end of a record) and returns, in one pass over its bytes and with no Python step per record:

- `ids`, `descriptions`: bytes and int32 offsets (the header's first whitespace-separated token, and the
  rest with the whitespace around it trimmed, as `atlas.fasta.parse_block` cuts them);
- `residues`, `offsets`: the normalised sequences (atlas.fasta.normalise: upper case, whitespace removed, one
  terminal '*' removed), back to back;
- `lines`: each header's line, counted from the block's first line (0);
- `sequence_crc64`, `id_crc64`: the CRC64 of `atlas.fasta.crc64_hex`, 16 bytes at a time (`_crc64`);
- `md5`: each normalised sequence's MD5 digest (16 bytes a row, `atlas.fasta.sequence_checksum` as bytes);
- `unusual`: the records holding anything but the 20 standard residues, which need the per-record checks;
- `window_others`: per record, how many of its first NUCLEOTIDE_WINDOW residues are not A/C/G/T/U/N (the
  nucleotide rule of `atlas.fasta.is_nucleotide`);
- `bodies`: where each record's sequence lines start and end in the block, and their width when the
  sequence is there as it is, cut into lines of one width (a last shorter one, blank lines after it) with
  no byte to normalise, else 0 ((count, 3) int32), so that `records_text` can cut a record again from the
  same bytes (the split's write pass rereads its input rather than storing every sequence in between):
  by copying its lines when it has a width, which is most records of real drops, else by normalising;
- `strange`: whether the block holds a NUL byte, a CR or a non-ASCII byte, for which the caller has
  `atlas.fasta.check_block_text` name what is wrong (or find CRLF line ends and UTF-8 headers fine).

Why compiled: the split must keep up with the disk, and every per-record Python step costs about a second
per 3.7 M records (a GB of MGnify proteins); numpy over a whole block still needed a dozen passes and a loop
per residue position for the CRC. Whitespace is atlas.fasta.WHITESPACE (what `bytes.split`, `normalise` use);
UTF-8 and line ends are left to atlas.fasta.check_block_text (`strange`).

MD5 runs on 16 sequences at once (`_md5_lanes`: the multi-buffer scheme of ISA-L's md5_mb): MD5 is one long
chain of dependent steps per message, so one message at a time leaves the CPU's vector units idle, while 16
chains side by side compile to vector instructions. Sequences are taken in order of their number of 64-byte
MD5 blocks (within windows of 4096 sequences, whose bytes stay in the cache), so the 16 of a group mostly end
together. The blocks that lie whole in a sequence are read where they are (only the last one or two are
padded in a buffer), and the 64 steps are written out so that each lane's state stays in registers.
Measured on 1 GB of MGnify-like sequences: 0.7 CPU-s per GB, against 3.5 for one hashlib call per sequence
and 1.7 for OpenSSL over one long buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlas.compiled import compiled
from atlas.fasta import NUCLEOTIDE_RESIDUES, NUCLEOTIDE_WINDOW, STANDARD_RESIDUES, WHITESPACE, crc64_table

# Byte classes, one bit each. _STRANGE: NUL, CR and non-ASCII, which need atlas.fasta.check_block_text.
_STANDARD, _SPACE, _NUCLEOTIDE, _STRANGE = 1, 2, 4, 8


def _classes() -> np.ndarray:
    table = np.zeros(256, np.uint8)
    table[list(STANDARD_RESIDUES.encode())] |= _STANDARD
    table[list(WHITESPACE)] |= _SPACE
    table[list(NUCLEOTIDE_RESIDUES.encode())] |= _NUCLEOTIDE
    table[[0, 13, *range(128, 256)]] |= _STRANGE
    return table


_CLASSES = _classes()
_UPPER = np.frombuffer(bytes(range(256)).upper(), np.uint8)  # ASCII a-z to A-Z, the rest as it is
_KEEP = (_CLASSES & _SPACE == 0).astype(np.uint64)  # 0 for whitespace
_CRC_TABLE = crc64_table()
_LANES = 16  # messages hashed side by side: one 512-bit vector of 32-bit words
_MD5_WINDOW = 4096  # messages ordered by length together: about 1 MB of MGnify sequences


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
    bodies: np.ndarray
    strange: bool  # a NUL byte, a CR or a non-ASCII byte somewhere: atlas.fasta.check_block_text tells more
    md5: np.ndarray


def parse_block_arrays(data: bytes) -> BlockArrays:
    """The records of a block of whole records (module docstring); `data` starts with '>'."""
    if data[:1] != b">":
        raise ValueError("a block starts with a '>' header")
    if len(data) >= 1 << 31:
        raise ValueError("a block must be under 2 GiB (Arrow's 32-bit offsets)")
    text = np.frombuffer(data, np.uint8)
    parsed = _parse(text, _newline_positions(text), _CRC_TABLE, _CLASSES, _UPPER, _KEEP, NUCLEOTIDE_WINDOW)
    residues, offsets = parsed[4], parsed[5]
    return BlockArrays(*parsed, md5=md5_digests(residues, offsets))


def load() -> None:
    """Load the compiled functions (from numba's cache; LLVM's start-up, ~0.4 s, comes with the first), so
    that a caller can have it done in a thread of its own while it does something else."""
    text = np.frombuffer(b">a\nMK\n", np.uint8)
    block = parse_block_arrays(text.tobytes())
    lengths, rows = np.diff(block.offsets).astype(np.int64), np.zeros(1, np.int64)
    records_text(text, block.bodies, block.ids, block.id_offsets, lengths, rows, rows, 1)
    hex_text(block.md5, np.frombuffer(b"0123456789abcdef", np.uint8))


def records_text(
    data: np.ndarray, bodies: np.ndarray, ids, id_offsets, lengths, rows: np.ndarray, groups, group_count: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """FASTA text (`>id`, then the normalised sequence on one line) of records `rows` of a block, cut again
    from the block's bytes `data` with the `bodies` of its parse and the records' `ids` (bytes and offsets,
    one per record of the block), laid out by group: the records of group 0 (`groups[i]` is the group of
    rows[i]) in the order of `rows`, then those of group 1, and so on. Rows in the order of the block are
    read, and each group's text written, front to back. Returns (text, where each group's text starts
    (group_count + 1 offsets), the index in `rows` of the first record whose sequence is not `lengths[row]`
    residues long, or -1): a mismatch means `data` is not the text that was parsed."""
    rows, groups = np.asarray(rows, np.int64), np.asarray(groups, np.int64)
    return _records_text(data, bodies, ids, id_offsets, lengths, rows, groups, group_count, _UPPER, _KEEP)


def hex_text(rows: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Each row of a 2-D uint8 array as hex text (two of the 16 `digits` per byte), back to back."""
    return _hex_text(np.ascontiguousarray(rows, np.uint8), digits)


def md5_digests(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The MD5 digest of each data[offsets[i]:offsets[i + 1]], a (count, 16) uint8 array."""
    words = _md5_lanes(data, np.asarray(offsets, np.int64))
    return words.astype("<u4", copy=False).view(np.uint8).reshape(len(offsets) - 1, 16)  # little-endian words


@compiled
def _crc64(table, data, start, end):  # pragma: no cover - compiled
    """CRC64 of data[start:end]. UniProt's CRC64 (reflected, polynomial x^64 + x^4 + x^3 + x + 1) is so
    sparse that advancing a CRC by 64 bits is a few shifts and XORs (_times_x64), with no table: here
    16 bytes at a time, the CRC's chain through one step (_times_x128) while the second word's goes beside
    it (0.36 CPU-s per GB, against 0.75 for a slice-by-8 table), then the byte table for the last bytes.
    Unsigned indices: numba then skips its check for negative ones and the 8 byte loads become one."""
    crc = np.uint64(0)
    at, stop = np.uint64(start), np.uint64(end)
    eight, sixteen = np.uint64(8), np.uint64(16)
    while at + sixteen <= stop:
        crc = _times_x128(crc ^ _word(data, at, 8)) ^ _times_x64(_word(data, at + eight, 8))
        at += sixteen
    if at + eight <= stop:
        crc = _times_x64(crc ^ _word(data, at, 8))
        at += eight
    while at < stop:
        crc = table[(crc ^ np.uint64(data[at])) & np.uint64(255)] ^ (crc >> eight)
        at += np.uint64(1)
    return crc


@compiled
def _word(data, at, size):  # pragma: no cover - compiled
    """The `size` bytes at `at` as a little-endian word (the order in which the reflected CRC and MD5 take
    them): one load once compiled, `size` being a constant where it is called."""
    word = np.uint64(0)
    for k in range(size):
        word |= np.uint64(data[at + np.uint64(k)]) << np.uint64(8 * k)
    return word


@compiled
def _times_x64(value):  # pragma: no cover - compiled
    """A CRC register moved on by 64 zero bits: value * x^64 mod P, in the reflected bit order. x^64 is
    x^4 + x^3 + x + 1 mod P, so the product is value times that (right shifts by 0, 1, 3, 4), and the bits
    shifted out below bit 0 (value's lowest 4, at the top in `value << 64 - shift`) are that product's terms
    past x^63, brought back by the same product (they are high enough not to overflow again)."""
    value ^= (value << np.uint64(63)) ^ (value << np.uint64(61)) ^ (value << np.uint64(60))
    return value ^ (value >> np.uint64(1)) ^ (value >> np.uint64(3)) ^ (value >> np.uint64(4))


@compiled
def _times_x128(value):  # pragma: no cover - compiled
    """value * x^128 mod P: x^128 is (x^4 + x^3 + x + 1)^2 = x^8 + x^6 + x^2 + 1 mod P (as _times_x64)."""
    over = (value << np.uint64(62)) ^ (value << np.uint64(58)) ^ (value << np.uint64(56))
    product = value ^ (value >> np.uint64(2)) ^ (value >> np.uint64(6)) ^ (value >> np.uint64(8))
    return product ^ over ^ (over >> np.uint64(1)) ^ (over >> np.uint64(3)) ^ (over >> np.uint64(4))


def _newline_positions(text: np.ndarray) -> np.ndarray:
    """Where the newlines are, as np.flatnonzero(text == 10) (0.4 CPU-s per GB) in 0.2 (_find_newlines)."""
    positions = np.empty(len(text) // 32 + 8, np.int64)  # lines of 32 bytes or more on average
    count = _find_newlines(text, positions)
    if count < 0:  # short lines, blank lines: room for one in every byte
        positions = np.empty(len(text), np.int64)
        count = _find_newlines(text, positions)
    return positions[:count]


@compiled
def _find_newlines(text, positions):  # pragma: no cover - compiled
    """Writes where the newlines of `text` are into `positions`; returns how many, or -1 if they do not fit.
    Eight bytes at a time: a word with no newline byte (most of them) is passed over in one test."""
    size = len(text)
    count = 0
    words = size // 8
    packed = text[: words * 8].view(np.uint64)
    ones, highs = np.uint64(0x0101010101010101), np.uint64(0x8080808080808080)
    newline = np.uint64(0x0A0A0A0A0A0A0A0A)
    for word in range(words):
        x = packed[word] ^ newline  # a zero byte where there is a newline
        if (x - ones) & ~x & highs:
            if count + 8 > len(positions):
                return -1
            for at in range(word * 8, word * 8 + 8):
                if text[at] == 10:
                    positions[count] = at
                    count += 1
    for at in range(words * 8, size):
        if text[at] == 10:
            if count == len(positions):
                return -1
            positions[count] = at
            count += 1
    return count


@compiled
def _parse(data, newlines, table, classes, upper, keep, window):  # pragma: no cover - compiled
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
    bodies = np.empty((count, 3), np.int32)  # where each record's sequence lines start and end, width
    residues = np.empty(size, np.uint8)
    ids = np.empty(size, np.uint8)
    descriptions = np.empty(size, np.uint8)
    offsets[0] = id_offsets[0] = description_offsets[0] = 0
    out = id_out = description_out = 0
    seen = 0  # the classes of every byte, or-ed: for _STRANGE
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
        _copy(data, first, ids, id_out, i - first)
        id_out += i - first
        id_offsets[record + 1] = id_out
        id_crc[record] = _crc64(table, data, first, i)
        while i < end and classes[data[i]] & _SPACE:
            i += 1
        last = end
        while last > i and classes[data[last - 1]] & _SPACE:
            last -= 1
        _copy(data, i, descriptions, description_out, last - i)
        description_out += last - i
        base = np.uint64(header)
        for j in range(np.uint64(end - header)):
            seen |= classes[data[base + j]]
        description_offsets[record + 1] = description_out
        bodies[record, 0] = min(end + 1, size)
        start = out
        other = 0  # _STANDARD set: some byte is not a standard residue
        first_line = k
        while k < line_count:  # the sequence lines, up to the next header
            begin = newlines[k - 1] + 1
            if begin < size and data[begin] == 62:
                break
            stop = newlines[k] if k < line_count - 1 else size
            # Copied with the letters' classes gathered on the way. (Here and below: unsigned indices, which
            # numba does not check for negative ones: 1.7 -> 1.1 CPU-s per GB for the whole parse.)
            source, target = np.uint64(begin), np.uint64(out)
            for j in range(np.uint64(stop - begin)):
                byte = data[source + j]
                residues[target + j] = byte
                other |= classes[byte] ^ _STANDARD
            out += stop - begin
            k += 1
        bodies[record, 1] = newlines[k - 1] + 1 if k < line_count else size  # the next '>', or the end
        seen |= other
        as_it_is = not other & _STANDARD  # standard residues only: the sequence is the lines' bytes
        if not as_it_is:
            if out > start and residues[out - 1] == 42 and _standard(residues, start, out - 1, classes):
                out -= 1  # standard residues and a terminal '*' (as prodigal writes proteins): the '*' goes
                as_it_is = True
            else:  # lower case, whitespace or other letters: normalised in place
                out = _normalise(residues, start, out, residues, start, upper, keep)
                unusual[record] = not _standard(residues, start, out, classes)
        bodies[record, 2] = _line_width(newlines, first_line, k, size) if as_it_is else 0
        others = 0
        base = np.uint64(start)
        for j in range(np.uint64(min(out, start + window) - start)):
            if not classes[residues[base + j]] & _NUCLEOTIDE:
                others += 1
        window_others[record] = others
        sequence_crc[record] = _crc64(table, residues, start, out)
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
        bodies,
        (seen & _STRANGE) != 0,
    )


@compiled
def _standard(residues, start, stop, classes):  # pragma: no cover - compiled
    """Whether residues[start:stop] are all standard residues."""
    other = 0
    base = np.uint64(start)
    for j in range(np.uint64(stop - start)):
        other |= classes[residues[base + j]] ^ _STANDARD
    return not other & _STANDARD


@compiled
def _line_width(newlines, first, last, size):  # pragma: no cover - compiled
    """The width of lines first..last - 1 when they are all of the first one's width but a last shorter one
    and blank ones after it, else 0. (Apart from _parse's loop over the lines, whose copy loop ran 10%
    slower with this state beside it.)"""
    width = -1
    shorter = False  # a line shorter than the first was seen: only blank lines may follow
    for k in range(first, last):
        begin = newlines[k - 1] + 1
        stop = newlines[k] if k < len(newlines) else size
        if width < 0:
            width = stop - begin
        elif shorter and stop > begin or stop - begin > width:
            return 0
        elif stop - begin < width:
            shorter = True
    return max(width, 0)


@compiled
def _normalise(source, first, last, target, out, upper, keep):  # pragma: no cover - compiled
    """atlas.fasta.normalise of source[first:last] into target from `out` on (in place when target is
    source and out <= first): whitespace out, upper case, one terminal '*' out. Returns the new end.
    Branch-free: each byte is stored, and the end moves on past it unless it is whitespace."""
    start, at, base = np.uint64(out), np.uint64(out), np.uint64(first)
    for j in range(np.uint64(last - first)):
        byte = source[base + j]
        target[at] = upper[byte]
        at += keep[byte]
    if at > start and target[at - np.uint64(1)] == 42:  # '*'
        at -= np.uint64(1)
    return np.int64(at)


@compiled
def _md5_lanes(data, offsets):  # pragma: no cover - compiled
    """MD5 state words (count, 4) of each data[offsets[r]:offsets[r + 1]], _LANES messages at a time: the
    64-byte blocks that lie whole in a message are read where they are; its last one or two, padded (the
    message's last bytes, 0x80, zeros, its length in bits), are made in `tails`."""
    count = len(offsets) - 1
    out = np.empty((count, 4), np.uint32)
    blocks = np.empty(count, np.int64)  # 64-byte MD5 blocks of each padded message
    most = 1
    for r in range(count):
        blocks[r] = (offsets[r + 1] - offsets[r] + 8) // 64 + 1
        most = max(most, blocks[r])
    # The messages in order of their block count (a counting sort: a few dozen distinct counts), within
    # windows of _MD5_WINDOW messages, whose bytes stay in the CPU's cache (1.2 -> 1.05 CPU-s per GB).
    starts = np.zeros(most + 2, np.int64)
    order = np.empty(count, np.int64)
    for window in range(0, count, _MD5_WINDOW):
        stop = min(count, window + _MD5_WINDOW)
        starts[:] = 0
        starts[0] = window
        for r in range(window, stop):
            starts[blocks[r] + 1] += 1
        for n in range(1, most + 2):
            starts[n] += starts[n - 1]
        for r in range(window, stop):
            order[starts[blocks[r]]] = r
            starts[blocks[r]] += 1
    tails = np.zeros(_LANES * 32, np.uint32)  # each lane's last two blocks, 32 words
    tail_bytes = tails.view(np.uint8)
    x = np.zeros((16, _LANES), np.uint32)  # the block being hashed: word g of lane l at x[g, l]
    state = np.empty((4, _LANES), np.uint32)
    live = np.zeros(_LANES, np.uint32)  # all ones while the lane's message has blocks left
    lane_record = np.zeros(_LANES, np.int64)
    lane_start = np.zeros(_LANES, np.uint64)  # where the lane's message starts in `data`
    lane_whole = np.zeros(_LANES, np.int64)  # its blocks read from `data`; the others from `tails`
    for first in range(0, count, _LANES):
        group = min(_LANES, count - first)
        width = 0  # blocks of the longest message of the group
        for lane in range(_LANES):  # lanes past the end repeat the last message; never read back
            record = order[first + min(lane, group - 1)]
            length = offsets[record + 1] - offsets[record]
            whole = length // 64
            lane_record[lane], lane_start[lane], lane_whole[lane] = record, offsets[record], whole
            width = max(width, blocks[record])
            state[0, lane], state[1, lane] = np.uint32(0x67452301), np.uint32(0xEFCDAB89)
            state[2, lane], state[3, lane] = np.uint32(0x98BADCFE), np.uint32(0x10325476)
            base, rest, at = np.uint64(lane * 128), np.uint64(length - whole * 64), np.uint64(offsets[record])
            at += np.uint64(whole * 64)
            end = base + np.uint64((blocks[record] - whole) * 64)  # one block, or two past 55 bytes
            _copy(data, at, tail_bytes, base, rest)
            tail_bytes[base + rest] = 0x80
            for j in range(base + rest + np.uint64(1), end - np.uint64(8)):
                tail_bytes[j] = 0
            bits = np.uint64(length) * np.uint64(8)
            tails[end // np.uint64(4) - np.uint64(2)] = np.uint32(bits & np.uint64(0xFFFFFFFF))
            tails[end // np.uint64(4) - np.uint64(1)] = np.uint32(bits >> np.uint64(32))
        for k in range(width):
            for lane in range(_LANES):
                live[lane] = np.uint32(0xFFFFFFFF) if k < blocks[lane_record[lane]] else np.uint32(0)
                if k < lane_whole[lane]:
                    at = lane_start[lane] + np.uint64(k * 64)
                    for g in range(16):
                        x[g, lane] = np.uint32(_word(data, at + np.uint64(4 * g), 4))
                else:  # (past the message's end, any block of the lane's: its state is kept as it is)
                    at = np.uint64(lane * 32 + min(k - lane_whole[lane], 1) * 16)
                    for g in range(16):
                        x[g, lane] = tails[at + np.uint64(g)]
            _md5_block(x, state, live)
        for lane in range(group):
            for j in range(4):
                out[lane_record[lane], j] = state[j, lane]
    return out


@compiled
def _md5_block(x, state, live):  # pragma: no cover - compiled
    """One 64-byte block of each lane's message (word g of lane l at x[g, l]) into its MD5 state, where
    `live` is all ones (RFC 1321's 64 steps, written out: the loop over the lanes then compiles to vector
    instructions, with each lane's four state words in registers throughout)."""
    for lane in range(_LANES):
        a0, b0, c0, d0 = state[0, lane], state[1, lane], state[2, lane], state[3, lane]
        a, b, c, d = a0, b0, c0, d0
        a = _md5_f(a, b, c, d, x[0, lane], 7, 0xD76AA478)
        d = _md5_f(d, a, b, c, x[1, lane], 12, 0xE8C7B756)
        c = _md5_f(c, d, a, b, x[2, lane], 17, 0x242070DB)
        b = _md5_f(b, c, d, a, x[3, lane], 22, 0xC1BDCEEE)
        a = _md5_f(a, b, c, d, x[4, lane], 7, 0xF57C0FAF)
        d = _md5_f(d, a, b, c, x[5, lane], 12, 0x4787C62A)
        c = _md5_f(c, d, a, b, x[6, lane], 17, 0xA8304613)
        b = _md5_f(b, c, d, a, x[7, lane], 22, 0xFD469501)
        a = _md5_f(a, b, c, d, x[8, lane], 7, 0x698098D8)
        d = _md5_f(d, a, b, c, x[9, lane], 12, 0x8B44F7AF)
        c = _md5_f(c, d, a, b, x[10, lane], 17, 0xFFFF5BB1)
        b = _md5_f(b, c, d, a, x[11, lane], 22, 0x895CD7BE)
        a = _md5_f(a, b, c, d, x[12, lane], 7, 0x6B901122)
        d = _md5_f(d, a, b, c, x[13, lane], 12, 0xFD987193)
        c = _md5_f(c, d, a, b, x[14, lane], 17, 0xA679438E)
        b = _md5_f(b, c, d, a, x[15, lane], 22, 0x49B40821)
        a = _md5_g(a, b, c, d, x[1, lane], 5, 0xF61E2562)
        d = _md5_g(d, a, b, c, x[6, lane], 9, 0xC040B340)
        c = _md5_g(c, d, a, b, x[11, lane], 14, 0x265E5A51)
        b = _md5_g(b, c, d, a, x[0, lane], 20, 0xE9B6C7AA)
        a = _md5_g(a, b, c, d, x[5, lane], 5, 0xD62F105D)
        d = _md5_g(d, a, b, c, x[10, lane], 9, 0x02441453)
        c = _md5_g(c, d, a, b, x[15, lane], 14, 0xD8A1E681)
        b = _md5_g(b, c, d, a, x[4, lane], 20, 0xE7D3FBC8)
        a = _md5_g(a, b, c, d, x[9, lane], 5, 0x21E1CDE6)
        d = _md5_g(d, a, b, c, x[14, lane], 9, 0xC33707D6)
        c = _md5_g(c, d, a, b, x[3, lane], 14, 0xF4D50D87)
        b = _md5_g(b, c, d, a, x[8, lane], 20, 0x455A14ED)
        a = _md5_g(a, b, c, d, x[13, lane], 5, 0xA9E3E905)
        d = _md5_g(d, a, b, c, x[2, lane], 9, 0xFCEFA3F8)
        c = _md5_g(c, d, a, b, x[7, lane], 14, 0x676F02D9)
        b = _md5_g(b, c, d, a, x[12, lane], 20, 0x8D2A4C8A)
        a = _md5_h(a, b, c, d, x[5, lane], 4, 0xFFFA3942)
        d = _md5_h(d, a, b, c, x[8, lane], 11, 0x8771F681)
        c = _md5_h(c, d, a, b, x[11, lane], 16, 0x6D9D6122)
        b = _md5_h(b, c, d, a, x[14, lane], 23, 0xFDE5380C)
        a = _md5_h(a, b, c, d, x[1, lane], 4, 0xA4BEEA44)
        d = _md5_h(d, a, b, c, x[4, lane], 11, 0x4BDECFA9)
        c = _md5_h(c, d, a, b, x[7, lane], 16, 0xF6BB4B60)
        b = _md5_h(b, c, d, a, x[10, lane], 23, 0xBEBFBC70)
        a = _md5_h(a, b, c, d, x[13, lane], 4, 0x289B7EC6)
        d = _md5_h(d, a, b, c, x[0, lane], 11, 0xEAA127FA)
        c = _md5_h(c, d, a, b, x[3, lane], 16, 0xD4EF3085)
        b = _md5_h(b, c, d, a, x[6, lane], 23, 0x04881D05)
        a = _md5_h(a, b, c, d, x[9, lane], 4, 0xD9D4D039)
        d = _md5_h(d, a, b, c, x[12, lane], 11, 0xE6DB99E5)
        c = _md5_h(c, d, a, b, x[15, lane], 16, 0x1FA27CF8)
        b = _md5_h(b, c, d, a, x[2, lane], 23, 0xC4AC5665)
        a = _md5_i(a, b, c, d, x[0, lane], 6, 0xF4292244)
        d = _md5_i(d, a, b, c, x[7, lane], 10, 0x432AFF97)
        c = _md5_i(c, d, a, b, x[14, lane], 15, 0xAB9423A7)
        b = _md5_i(b, c, d, a, x[5, lane], 21, 0xFC93A039)
        a = _md5_i(a, b, c, d, x[12, lane], 6, 0x655B59C3)
        d = _md5_i(d, a, b, c, x[3, lane], 10, 0x8F0CCC92)
        c = _md5_i(c, d, a, b, x[10, lane], 15, 0xFFEFF47D)
        b = _md5_i(b, c, d, a, x[1, lane], 21, 0x85845DD1)
        a = _md5_i(a, b, c, d, x[8, lane], 6, 0x6FA87E4F)
        d = _md5_i(d, a, b, c, x[15, lane], 10, 0xFE2CE6E0)
        c = _md5_i(c, d, a, b, x[6, lane], 15, 0xA3014314)
        b = _md5_i(b, c, d, a, x[13, lane], 21, 0x4E0811A1)
        a = _md5_i(a, b, c, d, x[4, lane], 6, 0xF7537E82)
        d = _md5_i(d, a, b, c, x[11, lane], 10, 0xBD3AF235)
        c = _md5_i(c, d, a, b, x[2, lane], 15, 0x2AD7D2BB)
        b = _md5_i(b, c, d, a, x[9, lane], 21, 0xEB86D391)
        keep = live[lane]  # a lane whose message has ended keeps its state
        state[0, lane] = (np.uint32(a0 + a) & keep) | (a0 & ~keep)
        state[1, lane] = (np.uint32(b0 + b) & keep) | (b0 & ~keep)
        state[2, lane] = (np.uint32(c0 + c) & keep) | (c0 & ~keep)
        state[3, lane] = (np.uint32(d0 + d) & keep) | (d0 & ~keep)


# RFC 1321's four step functions: a, b, c, d, the message word, the rotation and the sine constant.
@compiled
def _md5_f(a, b, c, d, word, shift, sine):  # pragma: no cover - compiled
    return np.uint32(b + _rotate(np.uint32(a + ((b & c) | (~b & d)) + word + np.uint32(sine)), shift))


@compiled
def _md5_g(a, b, c, d, word, shift, sine):  # pragma: no cover - compiled
    return np.uint32(b + _rotate(np.uint32(a + ((b & d) | (c & ~d)) + word + np.uint32(sine)), shift))


@compiled
def _md5_h(a, b, c, d, word, shift, sine):  # pragma: no cover - compiled
    return np.uint32(b + _rotate(np.uint32(a + (b ^ c ^ d) + word + np.uint32(sine)), shift))


@compiled
def _md5_i(a, b, c, d, word, shift, sine):  # pragma: no cover - compiled
    return np.uint32(b + _rotate(np.uint32(a + (c ^ (b | ~d)) + word + np.uint32(sine)), shift))


@compiled
def _rotate(value, shift):  # pragma: no cover - compiled
    return np.uint32((value << np.uint32(shift)) | (value >> np.uint32(32 - shift)))


@compiled
def _records_text(
    data, bodies, ids, id_offsets, lengths, rows, groups, group_count, upper, keep
):  # pragma: no cover
    starts = np.zeros(group_count + 1, np.int64)
    most = 0  # the longest body that is normalised (in `scratch`, then copied: its text may be longer)
    for n in range(len(rows)):
        row = rows[n]
        starts[groups[n] + 1] += id_offsets[row + 1] - id_offsets[row] + lengths[row] + 3  # >id, line ends
        if bodies[row, 2] == 0:
            most = max(most, bodies[row, 1] - bodies[row, 0])
    for group in range(group_count):
        starts[group + 1] += starts[group]
    text = np.empty(starts[group_count], np.uint8)
    scratch = np.empty(most, np.uint8)
    ends = starts[:-1].copy()  # where each group's next record goes
    for n in range(len(rows)):
        row, out = rows[n], ends[groups[n]]
        text[out] = 62  # '>'
        size = id_offsets[row + 1] - id_offsets[row]
        _copy(ids, id_offsets[row], text, out + 1, size)
        out += size + 1
        text[out] = 10
        out += 1
        width, length = bodies[row, 2], lengths[row]
        if width > 0 and length > 0 and bodies[row, 0] + length + (length - 1) // width <= len(data):
            copied = _copy_lines(data, bodies[row, 0], length, width, text, out)
        else:
            copied = _normalise(data, bodies[row, 0], bodies[row, 1], scratch, 0, upper, keep)
            if copied == length:
                _copy(scratch, 0, text, out, length)
        if copied != length:
            return text, starts, n
        text[out + length] = 10
        ends[groups[n]] = out + length + 1
    return text, starts, -1


@compiled
def _copy(source, at, target, out, size):  # pragma: no cover - compiled
    """target[out:out + size] = source[at:at + size] as a loop over unsigned indices: numba then does not
    check them for negative values, and LLVM turns the loop into vector moves (a slice costs more for the
    few bytes of an id)."""
    at, out = np.uint64(at), np.uint64(out)
    for j in range(np.uint64(size)):
        target[out + j] = source[at + j]


@compiled
def _copy_lines(data, at, length, width, text, out):  # pragma: no cover - compiled
    """Copy `length` residues from data[at:], lines of `width` each followed by a newline, to text[out:];
    returns how many were copied: fewer where a newline is missing (the text is not the one parsed).
    Each line by _copy, which compiles to vector moves (0.2 CPU-s per GB, against 0.9 for normalising byte by
    byte)."""
    at, left, width, out = np.uint64(at), np.uint64(length), np.uint64(width), np.uint64(out)
    copied = np.uint64(0)
    while True:
        piece = min(width, left - copied)
        _copy(data, at, text, out, piece)
        out += piece
        at += piece
        copied += piece
        if copied == left or data[at] != 10:
            return np.int64(copied)
        at += np.uint64(1)


@compiled
def _hex_text(rows, digits):  # pragma: no cover - compiled
    count, width = rows.shape
    text = np.empty(count * width * 2, np.uint8)
    out = np.uint64(0)
    for row in range(count):
        for k in range(width):
            byte = rows[row, k]
            text[out] = digits[byte >> 4]
            text[out + np.uint64(1)] = digits[byte & 15]
            out += np.uint64(2)
    return text
