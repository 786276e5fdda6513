"""atlas.seen: the hashes seen twice are always flagged; those seen once, rarely."""

from __future__ import annotations

import numpy as np

from atlas.fasta import crc64_hex
from atlas.seen import MAX_BITS, MIN_BITS, SeenTwice, bits_for


def test_every_hash_seen_twice_is_flagged_and_few_others():
    # Real ids: the CRC64 of MGnify-like names differ in their low bits only, and must still spread.
    ids = [f"MGYP{number:012d}" for number in range(200_000)]
    hashes = np.array([int(crc64_hex(name.encode()), 16) for name in ids], np.uint64)
    seen = SeenTwice(bits_for(len(hashes)))
    again = hashes[::1000]
    for batch in (hashes[:150_000], hashes[150_000:], again):  # repeats across batches and inside one
        seen.add(batch)
    seen.add(np.repeat(hashes[5:6], 2))
    flagged = seen.flagged(hashes)
    exact = np.zeros(len(hashes), bool)
    exact[::1000] = exact[5] = True
    assert flagged[exact].all()
    assert flagged.sum() - exact.sum() < len(hashes) / 8  # about 1 in 16 slots taken by another hash
    marked = hashes[[7, 8]]
    seen.mark(marked)
    assert seen.flagged(marked).all()


def test_nothing_added_nothing_flagged():
    seen = SeenTwice(MIN_BITS)
    assert seen.flagged(np.arange(10, dtype=np.uint64)).sum() == 0
    seen.add(np.arange(10, dtype=np.uint64))
    assert seen.flagged(np.arange(10, dtype=np.uint64)).sum() == 0  # ten small numbers, ten slots


def test_bits_grow_with_the_hashes_within_bounds():
    assert bits_for(0) == MIN_BITS
    assert bits_for(10**6) == 24  # 16 M slots for a million
    assert bits_for(10**9) == MAX_BITS
