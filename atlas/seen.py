"""Which 64-bit hashes were seen more than once, in memory that does not grow with their number.

`SeenTwice(bits)` keeps two bitmaps of 2**bits bits, indexed by a hash's top `bits` bits: one bit per slot
for "seen", one for "seen again", their 64-bit words interleaved (a slot's two bits share a cache line: one
miss per hash, where two bitmaps apart took two). `add(hashes)` records hashes, `mark(hashes)` flags them as
if seen again, and `flagged(hashes)` says which of them were: every hash added twice (or marked) is
flagged, and a hash added once is flagged too when another one shares its slot, about (hashes added) /
2**bits of them. So the flags are a superset, and exact comparisons of the flagged few decide (the split's
dedupe, atlas.chunking): a hash that is not flagged was added once and never marked.
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
        # Word 2w: "seen" of the slots of word w; word 2w + 1: their "seen again". calloc: pages that no
        # slot touches stay unused.
        self.words = np.zeros(2 << (bits - 6), np.uint64)

    def add(self, hashes) -> None:
        _add(self.words, np.ascontiguousarray(hashes, np.uint64), self.shift, True)

    def mark(self, hashes) -> None:
        _add(self.words, np.ascontiguousarray(hashes, np.uint64), self.shift, False)

    def flagged(self, hashes) -> np.ndarray:
        return _flagged(self.words, np.ascontiguousarray(hashes, np.uint64), self.shift)


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
    """A hash's slot: (the index of its "seen" word in the interleaved words, its bit in that word)."""
    slot = _mix(value) >> shift
    return (slot >> np.uint64(6)) << np.uint64(1), np.uint64(1) << (slot & np.uint64(63))


@compiled
def _add(words, hashes, shift, seen):  # pragma: no cover - compiled
    """Each hash's slot: with `seen`, flagged as seen again when already seen, then set as seen; else
    flagged as seen again."""
    for value in hashes:
        word, bit = _slot(value, shift)
        if not seen or words[word] & bit:
            words[word + 1] |= bit
        words[word] |= bit


@compiled
def _flagged(words, hashes, shift):  # pragma: no cover - compiled
    flags = np.empty(len(hashes), np.bool_)
    for index in range(len(hashes)):
        word, bit = _slot(hashes[index], shift)
        flags[index] = words[word + 1] & bit != 0
    return flags
