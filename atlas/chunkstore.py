"""Chunk FASTAs under names known before the split runs (slots), for runs on remote storage.

With remote storage (S3, GCS, ... as Snakemake's default storage) every file a job reads must be a declared
output of some job, and the split, a checkpoint, cannot declare files whose names it learns while running
(chunk names are keyed by content). But a drop never makes more than `max_chunks_per_drop` chunks, so there
the split declares that many slot files, `{slot_dir}/{slot_name(i)}.fasta`: slot i holds the i-th chunk in
sorted name order (`chunk_slots`), the slots past the last chunk are empty. Each fold job then retrieves its
own chunk's bytes and nothing else; the chunk's name (which names its predictions) stays the content key
in the manifest. On a shared filesystem the chunk FASTAs keep their content names beside the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def slot_name(index: int) -> str:
    return f"{index:05d}"


def chunk_slots(chunks: Sequence[str]) -> dict[str, str]:
    """chunk name -> its slot's name, for a drop's chunk names."""
    return {chunk: slot_name(index) for index, chunk in enumerate(sorted(chunks))}


def install_slots(chunk_dir: Path, slot_dir: Path, slots: int) -> None:
    """Move `chunk_dir/{chunk}.fasta` into their slots under `slot_dir` and write the other slots empty
    (the caller checks that the chunks fit)."""
    chunks = [path.stem for path in chunk_dir.glob("*.fasta")]
    slot_dir.mkdir(parents=True, exist_ok=True)
    filled = chunk_slots(chunks)
    for chunk, slot in filled.items():
        os.replace(chunk_dir / f"{chunk}.fasta", slot_dir / f"{slot}.fasta")
    for index in range(len(filled), slots):
        (slot_dir / f"{slot_name(index)}.fasta").write_bytes(b"")
