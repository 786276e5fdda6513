"""The Parquet tables of docs/SPEC.md, one schema per stage output, shared by writers and tests."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# chunks/{drop}/manifest.parquet: one row per input record
MANIFEST = pa.schema(
    [
        ("id", pa.string()),
        ("drop", pa.string()),
        ("checksum", pa.string()),
        ("length", pa.int64()),
        ("status", pa.string()),  # queued, duplicate, rejected
        ("reason", pa.string()),
        ("chunk", pa.string()),
    ]
)

# predictions/{drop}/{chunk}.parquet: one row per folded sequence
PREDICTIONS = pa.schema(
    [
        ("id", pa.string()),
        ("checksum", pa.string()),
        ("sequence", pa.string()),
        ("length", pa.int32()),
        ("mean_plddt", pa.float32()),
        ("ptm", pa.float32()),
        ("num_conf", pa.int32()),
        ("plddt", pa.list_(pa.float32())),
        ("max_pae", pa.float32()),
        ("structure_format", pa.string()),  # foldcomp (FCZ bytes) or mmcif (text): atlas.structure
        ("structure", pa.binary()),
        ("model", pa.string()),
        ("num_recycles", pa.int32()),
        ("status", pa.string()),  # ok, failed
        ("error", pa.string()),
        ("drop", pa.string()),
        ("chunk", pa.string()),
    ]
)

# novelty/{drop}/{chunk}.parquet: one row per chunk sequence
NOVELTY = pa.schema(
    [
        ("checksum", pa.string()),
        ("best_hit", pa.string()),
        ("identity", pa.float64()),
        ("query_coverage", pa.float64()),
        ("target_coverage", pa.float64()),
        ("evalue", pa.float64()),
        ("novel", pa.bool_()),
    ]
)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    """Write beside the target, then rename: a reader (or a killed job) never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
