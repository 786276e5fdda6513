"""The DuckDB views over the stage outputs, and the one classification of every queued record.

`create_stage_views` makes the views `manifest`, `predictions`, `novelty`, `structural` and
`cluster_members` (clusters/clusters.parquet) over Parquet files (explicit paths, or glob patterns such as
`atlas_root() || '/predictions/d1/*.parquet'`); a stage without files is an empty view typed from
atlas.tables.

`create_outcome_views` adds, on top of them, the rules the index, the report and `atlas stats` share:

- `novelty_best`: one novelty row per checksum. A sequence searched more than once (a defensive case) is
  novel only when every search says so: the non-novel row comes first, then the highest identity, then the
  best hit's name, so the choice never depends on file order.
- `outcomes`: one row per queued manifest record with its prediction (of the same drop and checksum; an ok
  row before a failed one), `outcome` = ok, failed or pending (no prediction row yet), `high_confidence`
  (HIGH_CONFIDENCE_RULE, both thresholds less THRESHOLD_TOLERANCE so a float32 metric equal to a threshold
  passes), the `novelty_best` columns (`searched` when the sequence has a novelty row), the
  `structural_best` columns (`structurally_searched` when the sequence has a confident structural row).
  Not the cluster: `atlas stats` and the report count over this view, and at scale a join with the cluster
  table (one row per confident sequence) would cost every count a scan of it.
  The structures (`structure`, per-residue `plddt`, `sequence`) are never read through it.
- `structural_best`: one confident structural row per checksum, a known fold before a novel one (as
  novelty_best), then the higher TM-score.
- `cluster_of`: a sequence's `cluster` and `cluster_representative`, one row per checksum.
- `clusters`: one row per cluster of `cluster_members`: `cluster`, `representative` (its checksum),
  `representative_id`, `representative_drop`, `representative_chunk` (the queued record that was folded),
  `representative_score` (pTM x mean pLDDT / 100) and `members` (how many sequences it holds).

`INDEX_QUERY` selects the index rows from `outcomes`: per checksum, the ok outcome of the earliest drop
(then chunk, then id), kept when it is high confidence (and novel when novelty was computed).
"""

from __future__ import annotations

from atlas.sql import duckdb_columns, quote_identifier, sql_float, sql_string
from atlas.tables import (
    ATLAS_INDEX,
    CLUSTERS,
    MANIFEST,
    NOVELTY,
    PREDICTIONS,
    STRUCTURAL,
    THRESHOLD_TOLERANCE,
)

STAGE_SCHEMAS = {
    "manifest": MANIFEST,
    "predictions": PREDICTIONS,
    "novelty": NOVELTY,
    "structural": STRUCTURAL,
    "cluster_members": CLUSTERS,
}
# the same rule in Arrow, for steps reading a chunk's file themselves: atlas.tables.high_confidence
HIGH_CONFIDENCE_RULE = "status = 'ok' AND mean_plddt >= min_plddt AND ptm >= min_ptm"
# prediction columns an outcome carries: metrics and provenance, never the structure
OUTCOME_PREDICTION_COLUMNS = ("mean_plddt", "ptm", "num_conf", "max_pae", "model", "num_recycles", "error")
OUTCOME_NOVELTY_COLUMNS = ("best_hit", "identity", "query_coverage", "target_coverage", "evalue", "novel")
OUTCOME_STRUCTURAL_COLUMNS = (
    "structure_hit", "structure_tm", "structure_aligned_length", "structure_verified", "structurally_novel",
)  # fmt: skip
INDEX_CLUSTER_COLUMNS = ("cluster", "cluster_representative")  # from cluster_of, not outcomes
# what the record's FASTA header said, kept from the manifest
OUTCOME_HEADER_COLUMNS = ("description", "crc64", "is_fragment", "header_fields")


def parquet_source(locations: list[str], stage: str) -> str:
    """A FROM-able source over SQL path expressions (literals or globs) of one stage with every column of its
    schema: a column that files written by an earlier version lack (e.g. the manifest's header columns) is
    NULL there."""
    typed = ", ".join(
        f"CAST(NULL AS {kind}) AS {quote_identifier(name)}"
        for name, kind in duckdb_columns(STAGE_SCHEMAS[stage]).items()
    )
    if not locations:
        return f"(SELECT {typed} WHERE false)"
    files = f"read_parquet([{', '.join(locations)}], union_by_name = true)"
    return f"(SELECT {typed} WHERE false UNION ALL BY NAME SELECT * FROM {files})"


def create_stage_views(connection, locations: dict[str, list[str]], temporary: bool = False) -> None:
    """Views manifest, predictions, novelty, structural, cluster_members over `locations[stage]` (SQL path
    expressions)."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    for stage in STAGE_SCHEMAS:
        source = parquet_source(locations.get(stage, []), stage)
        connection.execute(f"CREATE OR REPLACE {kind} {stage} AS SELECT * FROM {source}")


def path_literals(paths) -> list[str]:
    return [sql_string(path) for path in paths]


def create_outcome_views(connection, min_plddt: float, min_ptm: float, temporary: bool = False) -> None:
    """Views novelty_best, structural_best, prediction_best, outcomes and clusters (see the module
    docstring) over the stage views."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    plddt = sql_float(float(min_plddt) - THRESHOLD_TOLERANCE)
    ptm = sql_float(float(min_ptm) - THRESHOLD_TOLERANCE)
    prediction_columns = ", ".join(f"p.{quote_identifier(name)}" for name in OUTCOME_PREDICTION_COLUMNS)
    novelty_columns = ", ".join(f"n.{quote_identifier(name)}" for name in OUTCOME_NOVELTY_COLUMNS)
    header_columns = ", ".join(f"m.{quote_identifier(name)}" for name in OUTCOME_HEADER_COLUMNS)
    structural_columns = ", ".join(f"s.{quote_identifier(name)}" for name in OUTCOME_STRUCTURAL_COLUMNS)
    connection.execute(
        f"""
        CREATE OR REPLACE {kind} novelty_best AS
        SELECT checksum, {", ".join(OUTCOME_NOVELTY_COLUMNS)} FROM novelty WHERE checksum IS NOT NULL
        QUALIFY row_number() OVER (
            PARTITION BY checksum ORDER BY novel NULLS LAST, identity DESC NULLS LAST, best_hit) = 1;
        CREATE OR REPLACE {kind} structural_best AS
        SELECT checksum, {", ".join(OUTCOME_STRUCTURAL_COLUMNS)} FROM structural
        WHERE checksum IS NOT NULL AND confident
        QUALIFY row_number() OVER (
            PARTITION BY checksum
            ORDER BY structurally_novel NULLS LAST, structure_tm DESC NULLS LAST, structure_hit) = 1;
        CREATE OR REPLACE {kind} cluster_of AS
        SELECT checksum, cluster, representative AS cluster_representative FROM cluster_members
        QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY representative DESC, "drop") = 1;
        CREATE OR REPLACE {kind} prediction_best AS
        SELECT "drop", checksum, status, {", ".join(OUTCOME_PREDICTION_COLUMNS)} FROM predictions
        QUALIFY row_number() OVER (
            PARTITION BY "drop", checksum ORDER BY status IS DISTINCT FROM 'ok', chunk, id) = 1;
        CREATE OR REPLACE {kind} outcomes AS
        SELECT m."drop", m.chunk, m.id, m.checksum, m.length, {header_columns},
            CASE WHEN p.status IS NULL THEN 'pending' WHEN p.status = 'ok' THEN 'ok' ELSE 'failed' END
                AS outcome,
            {prediction_columns},
            coalesce(p.status = 'ok' AND p.mean_plddt >= {plddt} AND p.ptm >= {ptm}, false)
                AS high_confidence,
            n.checksum IS NOT NULL AS searched, {novelty_columns},
            s.checksum IS NOT NULL AS structurally_searched, {structural_columns}
        FROM manifest m
        LEFT JOIN prediction_best p ON p."drop" = m."drop" AND p.checksum = m.checksum
        LEFT JOIN novelty_best n ON n.checksum = m.checksum
        LEFT JOIN structural_best s ON s.checksum = m.checksum
        WHERE m.status = 'queued';
        CREATE OR REPLACE {kind} clusters AS
        SELECT c.cluster, c.checksum AS representative, m.id AS representative_id,
            c."drop" AS representative_drop, m.chunk AS representative_chunk,
            c.score AS representative_score, c.cluster_size AS members
        FROM cluster_members c
        LEFT JOIN manifest m ON m."drop" = c."drop" AND m.checksum = c.checksum AND m.status = 'queued'
        WHERE c.representative;
        """
    )


def index_query(drops: list[str], novelty: bool, structural: bool = False) -> str:
    """The SELECT of atlas/index.parquet's rows (ATLAS_INDEX columns) from the `outcomes` view and the
    cluster of each (`cluster_of`); the structural columns are null unless `structural` (structural novelty
    was computed)."""
    positions = ", ".join(f"({sql_string(drop)}, {position})" for position, drop in enumerate(drops))
    types = duckdb_columns(ATLAS_INDEX)
    columns = []
    for name, kind in types.items():
        if name == "novelty_computed":
            value = "true" if novelty else "false"
        elif name == "structural_computed":
            value = "true" if structural else "false"
        elif (name in OUTCOME_NOVELTY_COLUMNS and not novelty) or (
            name in OUTCOME_STRUCTURAL_COLUMNS and not structural
        ):
            value = "NULL"
        elif name in INDEX_CLUSTER_COLUMNS:
            value = f"c.{quote_identifier(name)}"
        else:
            value = f"o.{quote_identifier(name)}"
        columns.append(f"CAST({value} AS {kind}) AS {quote_identifier(name)}")
    novel_filter = "AND o.novel IS TRUE" if novelty else ""
    return f"""
    WITH drop_order(drop_name, drop_position) AS (VALUES {positions or "(NULL, 0)"}),
    representative AS (
        SELECT outcomes.*, coalesce(drop_order.drop_position, {len(drops)}) AS drop_position
        FROM outcomes LEFT JOIN drop_order ON drop_order.drop_name = outcomes."drop"
        WHERE outcome = 'ok'
        QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY drop_position, chunk, id) = 1
    )
    SELECT {", ".join(columns)}
    FROM representative o
    LEFT JOIN cluster_of c ON c.checksum = o.checksum
    WHERE o.high_confidence {novel_filter}
    ORDER BY o.drop_position, o.chunk, o.id
    """
