"""Which 64-bit hashes were seen more than once, in memory that does not grow with their number.

`SeenTwice(bits)` keeps two bitmaps of 2**bits bits, indexed by a hash's top `bits` bits: one bit per slot
for "seen", one for "seen again". `add(hashes)` records hashes, `mark(hashes)` flags them as if seen again,
and `flagged(hashes)` says which of them were: every hash added twice (or marked) is flagged, and a hash
added once is flagged too when another one shares its slot, about (hashes added) / 2**bits of them. So the
flags are a superset, and exact comparisons of the flagged few decide (the split's dedupe, atlas.chunking):
a hash that is not flagged was added once and never marked.
"""

from __future__ import annotations

import math

import numpy as np

from atlas.compiled import compiled

MIN_BITS, MAX_BITS = 20, 28  # 2 x 128 KB .. 2 x 32 MB


def bits_for(expected: int) -> int:
    """Slots for about `expected` hashes: 16 slots each (a hash added once is flagged with odds of about
    1 in 16), within MIN_BITS and MAX_BITS (past that, more of them are flagged)."""
    wanted = math.ceil(math.log2(max(expected, 1) * 16))
    return min(max(wanted, MIN_BITS), MAX_BITS)


class SeenTwice:
    def __init__(self, bits: int):
        self.shift = np.uint64(64 - bits)
        self.seen = np.zeros(1 << (bits - 6), np.uint64)  # calloc: pages that no slot touches stay unused
        self.again = np.zeros(1 << (bits - 6), np.uint64)

    def add(self, hashes) -> None:
        _add(self.seen, self.again, np.ascontiguousarray(hashes, np.uint64), self.shift)

    def mark(self, hashes) -> None:
        _add(self.again, self.again, np.ascontiguousarray(hashes, np.uint64), self.shift)

    def flagged(self, hashes) -> np.ndarray:
        return _flagged(self.again, np.ascontiguousarray(hashes, np.uint64), self.shift)


_MIX = np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53), np.uint64(33)


@compiled
def _mix(value):  # pragma: no cover - compiled
    """MurmurHash3's 64-bit finaliser: every bit of the hash moves the top bits, which pick the slot (the
    CRC64 of similar ids, such as MGYP000000001234, differ in their low bits only)."""
    first, second, shift = _MIX
    value = (value ^ (value >> shift)) * first
    value = (value ^ (value >> shift)) * second
    return value ^ (value >> shift)


@compiled
def _slot(value, shift):  # pragma: no cover - compiled
    """A hash's slot in a bitmap of 64-bit words: (its word, its bit in that word)."""
    slot = _mix(value) >> shift
    return slot >> np.uint64(6), np.uint64(1) << (slot & np.uint64(63))


@compiled
def _add(seen, again, hashes, shift):  # pragma: no cover - compiled
    """Each hash's slot: flagged in `again` when `seen` already has it, then set in `seen` (so with `seen`
    and `again` the same bitmap, it is flagged)."""
    for value in hashes:
        word, bit = _slot(value, shift)
        if seen[word] & bit:
            again[word] |= bit
        seen[word] |= bit


@compiled
def _flagged(again, hashes, shift):  # pragma: no cover - compiled
    flags = np.empty(len(hashes), np.bool_)
    for index in range(len(hashes)):
        word, bit = _slot(hashes[index], shift)
        flags[index] = again[word] & bit != 0
    return flags
