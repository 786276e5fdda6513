"""Slot files (atlas.chunkstore): chunk FASTAs under names known before the split runs (remote storage)."""

from __future__ import annotations

from pathlib import Path

import pytest

from atlas.chunking import SplitError, split_drop
from atlas.chunkstore import chunk_slots, slot_name

DROP = Path(__file__).resolve().parents[1] / "example" / "drop1.fasta"
SETTINGS = {"chunk_residues": 2000, "workers": 1}


def test_slots_hold_the_chunk_fastas_in_name_order_and_the_rest_are_empty(tmp_path):
    local = tmp_path / "local" / "manifest.parquet"
    split_drop(DROP, "drop1", local, **SETTINGS)
    chunks = {path.stem: path.read_bytes() for path in local.parent.glob("*.fasta")}
    assert len(chunks) >= 2

    remote = tmp_path / "remote" / "manifest.parquet"
    slots = len(chunks) + 3
    split_drop(DROP, "drop1", remote, slot_dir=remote.parent / "slots", slots=slots, **SETTINGS)
    assert remote.read_bytes() == local.read_bytes()
    assert not list(remote.parent.glob("*.fasta")), "chunk FASTAs beside the manifest"
    written = {path.stem: path.read_bytes() for path in (remote.parent / "slots").glob("*.fasta")}
    assert set(written) == {slot_name(index) for index in range(slots)}
    for chunk, slot in chunk_slots(chunks).items():
        assert written.pop(slot) == chunks[chunk], chunk
    assert set(written.values()) == {b""}


def test_more_chunks_than_slots_fail_and_leave_no_manifest(tmp_path):
    manifest = tmp_path / "manifest.parquet"
    with pytest.raises(SplitError, match="do not fit in 1 slot files"):
        split_drop(DROP, "drop1", manifest, slot_dir=tmp_path / "slots", slots=1, **SETTINGS)
    assert not manifest.exists()
