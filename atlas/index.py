"""The atlas index: the confident (and novel) predictions, and DuckDB views over every Parquet output.

`atlas index --outdir OUT --drops d1 d2 ... --min-plddt F --min-ptm F (--novelty | --no-novelty)` writes

`OUT/atlas/index.parquet`
    one row per unique sequence (checksum) whose prediction has status ok, mean_plddt >= min_plddt,
    ptm >= min_ptm and, with --novelty, novel = true; with --no-novelty every confident prediction, with
    null novelty columns and novelty_computed = false (thresholds allow THRESHOLD_TOLERANCE = 1e-6, so a
    metric stored as float32 equal to a threshold passes). Columns (INDEX_COLUMNS): id, checksum, drop, chunk,
    length, mean_plddt, ptm, num_conf, max_pae, model, num_recycles, best_hit, identity, query_coverage,
    target_coverage, evalue, novel, novelty_computed. No structures: the `mmcif` column is never read.
    When a checksum has more than one ok prediction (the split stage folds each sequence once, so only a
    defensive case), the one of the earliest drop in --drops order, then chunk, then id is used. Other ids
    of the same sequence are in the manifest (join on checksum). Rows are ordered by drop, chunk, id.

`OUT/atlas/atlas.duckdb`
    views `manifest`, `predictions`, `novelty` over the Parquet files of the given drops (manifests,
    `predictions/{drop}/{chunk}.parquet`, `novelty/{drop}/{chunk}.parquet` for the chunks of
    `chunks/{drop}/*.fasta`), `atlas` over index.parquet, and a table `atlas_info` (thresholds, drops,
    whether novelty was computed, when). A view with no file (no reference; a drop without chunks) is an
    empty view with the right columns.

    Paths: every view reads `atlas_root() || '/relative/path'`, where the macro `atlas_root()` is
    `coalesce(getvariable('atlas_outdir'), '<absolute outdir when built>')`. Any DuckDB client opening the
    file reads the files where they were built; after moving the outdir, `SET VARIABLE atlas_outdir =
    '/new/outdir'` first (`atlas query` and `atlas.query.connect()` always do), so a moved or copied atlas
    keeps working and a query never reads another outdir's files by accident.

Both files are built under temporary names and moved into place (index first), so a killed job leaves
either the previous files or the new ones.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

# Column types of the three stage outputs (docs/SPEC.md), used for the empty views and to type the index.
MANIFEST_COLUMNS = {
    "id": "VARCHAR",
    "drop": "VARCHAR",
    "checksum": "VARCHAR",
    "length": "BIGINT",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "chunk": "VARCHAR",
}
PREDICTION_COLUMNS = {
    "id": "VARCHAR",
    "checksum": "VARCHAR",
    "sequence": "VARCHAR",
    "length": "BIGINT",
    "mean_plddt": "DOUBLE",
    "ptm": "DOUBLE",
    "num_conf": "BIGINT",
    "plddt": "FLOAT[]",
    "max_pae": "DOUBLE",
    "mmcif": "VARCHAR",
    "model": "VARCHAR",
    "num_recycles": "BIGINT",
    "status": "VARCHAR",
    "error": "VARCHAR",
    "drop": "VARCHAR",
    "chunk": "VARCHAR",
}
NOVELTY_COLUMNS = {
    "checksum": "VARCHAR",
    "best_hit": "VARCHAR",
    "identity": "DOUBLE",
    "query_coverage": "DOUBLE",
    "target_coverage": "DOUBLE",
    "evalue": "DOUBLE",
    "novel": "BOOLEAN",
}
INDEX_PREDICTION_COLUMNS = (
    "id", "checksum", "drop", "chunk", "length", "mean_plddt", "ptm", "num_conf", "max_pae", "model",
    "num_recycles",
)  # fmt: skip
INDEX_NOVELTY_COLUMNS = ("best_hit", "identity", "query_coverage", "target_coverage", "evalue", "novel")
INDEX_COLUMNS = (*INDEX_PREDICTION_COLUMNS, *INDEX_NOVELTY_COLUMNS, "novelty_computed")
VIEWS = ("manifest", "predictions", "novelty", "atlas")
ROOT_VARIABLE = "atlas_outdir"
# Metrics stored as float32 (0.7 -> 0.69999999) must still pass a threshold they are equal to.
THRESHOLD_TOLERANCE = 1e-6


def _log(message: str) -> None:
    print(f"[atlas] {message}", file=sys.stderr, flush=True)


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_string(text: str | Path) -> str:
    """A SQL string literal for DuckDB (paths, names)."""
    return "'" + str(text).replace("'", "''") + "'"


def drop_chunks(outdir: Path, drop: str) -> list[str]:
    """Chunk names of a drop: its `chunks/{drop}/*.fasta`, as the workflow finds them."""
    return sorted(path.name[: -len(".fasta")] for path in (outdir / "chunks" / drop).glob("*.fasta"))


def stage_files(
    outdir: Path, drops: list[str], novelty: bool, predictions_dir: str = "predictions"
) -> dict[str, list[str]]:
    """Paths relative to outdir of the drops' manifests, predictions and novelty files; all must exist."""
    files: dict[str, list[str]] = {"manifest": [], "predictions": [], "novelty": []}
    for drop in drops:
        files["manifest"].append(f"chunks/{drop}/manifest.parquet")
        for chunk in drop_chunks(outdir, drop):
            files["predictions"].append(f"{predictions_dir}/{drop}/{chunk}.parquet")
            if novelty:
                files["novelty"].append(f"novelty/{drop}/{chunk}.parquet")
    missing = [path for paths in files.values() for path in paths if not (outdir / path).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise FileNotFoundError(f"missing under {outdir}: {shown}")
    return files


def _source(paths: list[str], columns: dict[str, str]) -> str:
    """A FROM-able SQL source over the Parquet files (through atlas_root()), or a typed empty one."""
    if not paths:
        typed = ", ".join(
            f"CAST(NULL AS {kind}) AS {quote_identifier(name)}" for name, kind in columns.items()
        )
        return f"(SELECT {typed} WHERE false)"
    listed = ", ".join(f"atlas_root() || {sql_string('/' + path)}" for path in paths)
    return f"read_parquet([{listed}], union_by_name = true)"


def index_query(
    files: dict[str, list[str]], drops: list[str], min_plddt: float, min_ptm: float, novelty: bool
) -> str:
    """The SELECT of the index rows (explicit columns only: the structures are never read)."""
    positions = ", ".join(f"({sql_string(drop)}, {position})" for position, drop in enumerate(drops))
    prediction_columns = ", ".join(
        f"CAST({quote_identifier(name)} AS {PREDICTION_COLUMNS[name]}) AS {quote_identifier(name)}"
        for name in (*INDEX_PREDICTION_COLUMNS, "status")
    )
    chosen = ", ".join(f"p.{quote_identifier(name)}" for name in INDEX_PREDICTION_COLUMNS)
    if novelty:
        novelty_columns = ", ".join(
            f"CAST({quote_identifier(name)} AS {NOVELTY_COLUMNS[name]}) AS {quote_identifier(name)}"
            for name in ("checksum", *INDEX_NOVELTY_COLUMNS)
        )
        novelty_cte = f""",
    novelty_rows AS (
        SELECT {novelty_columns} FROM {_source(files["novelty"], NOVELTY_COLUMNS)}
        QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY novel, best_hit) = 1
    )"""
        novelty_select = (
            ", ".join(f"n.{name}" for name in INDEX_NOVELTY_COLUMNS) + ", true AS novelty_computed"
        )
        novelty_join = "LEFT JOIN novelty_rows n ON n.checksum = p.checksum"
        novelty_filter = "AND n.novel IS TRUE"
    else:
        novelty_cte = ""
        novelty_select = (
            ", ".join(f"CAST(NULL AS {NOVELTY_COLUMNS[name]}) AS {name}" for name in INDEX_NOVELTY_COLUMNS)
            + ", false AS novelty_computed"
        )
        novelty_join = novelty_filter = ""
    return f"""
    WITH drop_order(drop_name, drop_position) AS (VALUES {positions}),
    ok AS (
        SELECT {prediction_columns} FROM {_source(files["predictions"], PREDICTION_COLUMNS)}
        WHERE status = 'ok'
    ),
    representative AS (
        SELECT ok.*, coalesce(drop_order.drop_position, {len(drops)}) AS drop_position
        FROM ok LEFT JOIN drop_order ON drop_order.drop_name = ok."drop"
        QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY drop_position, chunk, id) = 1
    ){novelty_cte}
    SELECT {chosen}, {novelty_select}
    FROM representative p {novelty_join}
    WHERE p.mean_plddt >= {float(min_plddt) - THRESHOLD_TOLERANCE!r}
        AND p.ptm >= {float(min_ptm) - THRESHOLD_TOLERANCE!r} {novelty_filter}
    ORDER BY p.drop_position, p.chunk, p.id
    """


def _remove(path: Path) -> None:
    for candidate in (path, Path(f"{path}.wal")):
        if candidate.exists():
            candidate.unlink()


def build_index(
    outdir: str | Path,
    drops: list[str],
    min_plddt: float,
    min_ptm: float,
    novelty: bool,
    predictions_dir: str = "predictions",
) -> dict[str, int]:
    """Write atlas/index.parquet and atlas/atlas.duckdb; returns counts for the log."""
    import duckdb

    outdir = Path(outdir)
    root = outdir.resolve()
    files = stage_files(outdir, drops, novelty, predictions_dir)
    atlas_dir = outdir / "atlas"
    atlas_dir.mkdir(parents=True, exist_ok=True)
    index_path = atlas_dir / "index.parquet"
    database_path = atlas_dir / "atlas.duckdb"
    tmp_index = atlas_dir / f".index.parquet.tmp-{os.getpid()}"
    tmp_database = atlas_dir / f".atlas.duckdb.tmp-{os.getpid()}"
    for stale in [*atlas_dir.glob(".index.parquet.tmp-*"), *atlas_dir.glob(".atlas.duckdb.tmp-*")]:
        stale.unlink(missing_ok=True)  # left by a killed run (one index job runs at a time)
    try:
        connection = duckdb.connect(str(tmp_database))
        try:
            connection.execute(
                f"CREATE MACRO atlas_root() AS coalesce(getvariable({sql_string(ROOT_VARIABLE)}), "
                f"{sql_string(root.as_posix())})"
            )
            sources = {
                "manifest": _source(files["manifest"], MANIFEST_COLUMNS),
                "predictions": _source(files["predictions"], PREDICTION_COLUMNS),
                "novelty": _source(files["novelty"], NOVELTY_COLUMNS),
            }
            for view, source in sources.items():
                connection.execute(f"CREATE VIEW {view} AS SELECT * FROM {source}")
            query = index_query(files, drops, min_plddt, min_ptm, novelty)
            connection.execute(f"COPY ({query}) TO {sql_string(str(tmp_index))} (FORMAT parquet)")
            os.replace(tmp_index, index_path)
            connection.execute(
                "CREATE VIEW atlas AS SELECT * FROM read_parquet(atlas_root() || '/atlas/index.parquet')"
            )
            counts = _counts(connection, novelty)
            connection.execute(
                """CREATE TABLE atlas_info AS SELECT
                    ?::DOUBLE AS min_plddt, ?::DOUBLE AS min_ptm, ?::BOOLEAN AS novelty_computed,
                    ?::VARCHAR[] AS drops, ?::BIGINT AS atlas_rows, ?::VARCHAR AS built_outdir,
                    ?::TIMESTAMP AS built_at_utc, ?::VARCHAR AS paths""",
                [
                    float(min_plddt),
                    float(min_ptm),
                    novelty,
                    list(drops),
                    counts["atlas"],
                    root.as_posix(),
                    datetime.now(UTC).replace(tzinfo=None, microsecond=0),
                    "views read atlas_root() || '/<path relative to the outdir>'; "
                    f"after moving the outdir run: SET VARIABLE {ROOT_VARIABLE} = '/new/outdir'",
                ],
            )
            connection.execute("CHECKPOINT")
        finally:
            connection.close()
        os.replace(tmp_database, database_path)
    finally:
        _remove(tmp_index)
        _remove(tmp_database)
    return counts


def _counts(connection, novelty: bool) -> dict[str, int]:
    row = connection.execute(
        """SELECT count(*), count(*) FILTER (WHERE status = 'ok'), count(*) FILTER (WHERE status <> 'ok')
        FROM (SELECT status FROM predictions)"""
    ).fetchone()
    atlas_rows = connection.execute("SELECT count(*) FROM atlas").fetchone()[0]
    counts = {"predictions": row[0], "ok": row[1], "failed": row[2], "atlas": atlas_rows}
    if novelty:
        counts["novel"] = connection.execute("SELECT count(*) FROM novelty WHERE novel").fetchone()[0]
    return counts


def index_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas index", description="build atlas/index.parquet and atlas.duckdb"
    )
    parser.add_argument("--outdir", required=True)
    parser.add_argument("--drops", nargs="+", required=True, help="drop names, in arrival order")
    parser.add_argument("--min-plddt", type=float, required=True)
    parser.add_argument("--min-ptm", type=float, required=True)
    parser.add_argument("--predictions-dir", default="predictions", help="relative to outdir: one model's")
    novelty = parser.add_mutually_exclusive_group(required=True)
    novelty.add_argument("--novelty", dest="novelty", action="store_true", help="keep novel predictions only")
    novelty.add_argument("--no-novelty", dest="novelty", action="store_false", help="no reference configured")
    args = parser.parse_args(argv)
    import duckdb

    try:
        counts = build_index(
            args.outdir, args.drops, args.min_plddt, args.min_ptm, args.novelty, args.predictions_dir
        )
    except (OSError, duckdb.Error) as error:
        print(f"atlas index: error: {error}", file=sys.stderr)
        return 1
    _log(
        f"{counts['predictions']} predictions ({counts['ok']} ok, {counts['failed']} failed); "
        + (f"{counts['novel']} novel; " if args.novelty else "novelty not computed; ")
        + f"{counts['atlas']} in the atlas (min_plddt {args.min_plddt}, min_ptm {args.min_ptm})"
    )
    return 0
