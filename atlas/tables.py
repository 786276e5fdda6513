"""The Parquet tables of docs/SPEC.md, one schema per stage output, shared by writers and tests."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# The high-confidence rule (atlas.views.HIGH_CONFIDENCE_RULE) compares float32 metrics (0.7 -> 0.69999999):
# a metric equal to a threshold must still pass it.
THRESHOLD_TOLERANCE = 1e-6


def high_confidence(predictions: pa.Table, min_plddt: float, min_ptm: float) -> pa.ChunkedArray:
    """atlas.views.HIGH_CONFIDENCE_RULE over a predictions table (status, mean_plddt, ptm) in Arrow, for the
    steps that read a chunk's file themselves: true where ok and both metrics reach their thresholds."""
    import pyarrow.compute as pc

    passes = pc.and_kleene(
        pc.equal(predictions["status"], "ok"),
        pc.and_kleene(
            pc.greater_equal(predictions["mean_plddt"], min_plddt - THRESHOLD_TOLERANCE),
            pc.greater_equal(predictions["ptm"], min_ptm - THRESHOLD_TOLERANCE),
        ),
    )
    return pc.fill_null(passes, False)  # a failed row has no metrics


# chunks/{drop}/manifest.parquet: one row per input record, in input order (docs/SPEC.md, atlas.chunking)
MANIFEST = pa.schema(
    [
        ("id", pa.string()),
        ("drop", pa.string()),
        ("checksum", pa.string()),  # MD5 hex of the normalised sequence
        ("crc64", pa.string()),  # UniProt/MGnify CRC64, 16 upper-case hex digits (Biopython: "CRC-" + it)
        ("length", pa.int64()),
        ("status", pa.string()),  # queued, duplicate, rejected
        ("reason", pa.string()),
        ("chunk", pa.string()),  # the chunk of a queued record: the authoritative chunk list
        ("description", pa.string()),  # header text after the id ("" when none)
        ("is_fragment", pa.bool_()),  # what the header says (FL=, partial=, "(Fragment)"); null: it does not
        ("header_fields", pa.map_(pa.string(), pa.string())),  # the header's KEY=value fields
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
        ("pae", pa.binary()),  # L x L uint8 PAE codes of 0.5 A, row-major; null unless store_pae (atlas.fold)
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
# Key-value metadata of a predictions file: wall seconds of folding and residues folded by the job that
# wrote it (absent when the job folded nothing, everything having been resumed from parts)
FOLD_SECONDS_KEY = "atlas.fold_seconds"
FOLD_RESIDUES_KEY = "atlas.fold_residues"

# Angstrom per code of the `pae` column (uint8): ESMFold's PAE lies in 0-31.75 A, codes 0-64 of 255
PAE_STEP = 0.5

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

# structural/{drop}/{chunk}.parquet: one row per ok prediction of the chunk (atlas.structural)
STRUCTURAL = pa.schema(
    [
        ("checksum", pa.string()),
        ("confident", pa.bool_()),
        ("structure_hit", pa.string()),  # the first verified hit at >= min_tm, else the best verified one
        ("structure_tm", pa.float32()),  # TM-score of structure_hit, normalised by the query's length
        ("structure_aligned_length", pa.int32()),  # residue pairs within 5 A after superposition
        ("structure_candidates", pa.int32()),  # hits the 3Di search returned (at most max_seqs)
        ("structure_verified", pa.int32()),  # TM-aligns run: K used
        ("structurally_novel", pa.bool_()),  # no verified hit at >= min_tm; null when not confident
    ]
)

# clusters/{drop}/members.parquet: the drop's confident sequences and their cluster (atlas.clusters)
CLUSTER_MEMBERS = pa.schema(
    [
        ("checksum", pa.string()),
        ("drop", pa.string()),
        ("cluster", pa.string()),  # checksum of the MMseqs2 cluster's founding representative: a stable id
        ("score", pa.float32()),  # pTM x mean pLDDT / 100 (0-1)
    ]
)
# clusters/clusters.parquet: every clustered sequence, its cluster's size and whether it represents it
CLUSTERS = pa.schema(
    [
        *CLUSTER_MEMBERS,
        ("cluster_size", pa.int64()),
        ("representative", pa.bool_()),  # the best score of its cluster (ties: the smaller checksum)
    ]
)

# atlas/index.parquet: one row per unique sequence in the atlas (atlas.views.INDEX_QUERY); no structures
ATLAS_INDEX = pa.schema(
    [
        *(PREDICTIONS.field(name) for name in ("id", "checksum", "drop", "chunk", "length", "mean_plddt")),
        *(PREDICTIONS.field(name) for name in ("ptm", "num_conf", "max_pae", "model", "num_recycles")),
        *(NOVELTY.field(name) for name in ("best_hit", "identity", "query_coverage", "target_coverage")),
        NOVELTY.field("evalue"),
        NOVELTY.field("novel"),
        ("novelty_computed", pa.bool_()),
        *(MANIFEST.field(name) for name in ("description", "crc64", "is_fragment", "header_fields")),
        *(STRUCTURAL.field(name) for name in ("structure_hit", "structure_tm", "structure_aligned_length")),
        STRUCTURAL.field("structure_verified"),
        STRUCTURAL.field("structurally_novel"),
        ("structural_computed", pa.bool_()),
        CLUSTERS.field("cluster"),
        ("cluster_representative", pa.bool_()),
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
