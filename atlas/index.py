"""The atlas index step: atlas/index.parquet and atlas/atlas.duckdb from the files the workflow declares.

`build_index(manifests, predictions, novelty, index, database, drops, min_plddt, min_ptm, novelty_computed,
lookups, structural=..., structural_computed=..., clusters=...)` is called by workflow/scripts/atlas_index.py
with the rule's declared inputs (at scale 10^5 paths, which no shell command line holds) and outputs
`OUTDIR/atlas/staged/index.parquet` and `OUTDIR/atlas/staged/atlas.duckdb`. `structural` are the per-chunk
files of atlas.structural (when a structure reference is configured), `clusters` the cluster table of
atlas.clusters (clusters/clusters.parquet).

In the workflow, rule drop_outcomes first writes each drop's outcome rows (`write_drop_outcomes`: the
`outcomes` view over that drop's files only) to `OUTDIR/atlas/parts/{drop}.outcomes.parquet`, once per drop;
the index then reads these compact parts, not the predictions: adding a drop reads its own files and the
parts, never an earlier drop's predictions (at 10^7 rows: bench/index_scale.py).

It reads exactly the given files and first checks the accounting invariant: every queued record of every
manifest has a prediction row (ok, or failed with its error) in its drop; else it stops with an
IncompleteAtlasError naming the drop, chunk and ids missing, and nothing is published.

`atlas/index.parquet`
    one row per unique sequence (checksum) with an ok prediction that is high confidence and, with novelty,
    novel (atlas.views: `outcomes`, `INDEX_QUERY`); columns atlas.tables.ATLAS_INDEX, no structures: the
    metrics, the sequence novelty, the header data, the best structural hit (`structure_hit`,
    `structure_tm`, `structure_aligned_length`, `structure_verified`, `structurally_novel`, null where
    `structural_computed` is false) and the sequence's `cluster` and `cluster_representative`.

`atlas/atlas.duckdb`
    views `manifest`, `predictions`, `novelty`, `structural` (one glob per drop folder, `atlas_root() ||
    '/predictions/d1/*.parquet'`, so the database never names 10^5 files and never a path that exists only
    inside one job), `cluster_members` (clusters/clusters.parquet), `novelty_best`, `structural_best`,
    `cluster_of`, `prediction_best`, `outcomes` (the classification, with the thresholds of this build),
    `clusters` (one row per cluster: its representative and size),
    `atlas` over index.parquet, `lookup_by_id` and `lookup_by_checksum` (atlas.lookup: one row group read per
    drop to find an id or checksum), and tables `chunk_files` (drop, chunk -> its predictions and novelty
    file, relative to the outdir: one lookup reads one predictions file) and `atlas_info` (thresholds, drops,
    novelty_computed, structural_computed, clusters_computed, counts, when).
    `atlas_root()` is `coalesce(getvariable('atlas_outdir'), '<absolute outdir when built>')`; after moving
    the outdir, `SET VARIABLE atlas_outdir = '/new/outdir'` first (`atlas query` always does).

By hand, `atlas index --outdir D [--drops ...] [--predictions-dir predictions/KEY] [--novelty]
[--structural] [--clusters] ...` builds the same atlas for a finished outdir from the files its manifests
name (the `chunk` column of queued records), writing the lookup files that are missing: for rebuilding
after a move, other thresholds, or tests.

Swapped, never rebuilt in place: Snakemake deletes a job's outputs before it runs, so the rule's outputs are
the staged files; each, once complete, is published by hard link (a copy where links are not possible)
under a temporary name and renamed over `atlas/index.parquet`, then `atlas/atlas.duckdb` (whose `atlas`
view reads the published index). A reader (`atlas query`) always opens a whole database and a whole index,
the previous or the new ones, and a kill at any moment leaves whole files in place.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from atlas.sql import duckdb_columns, sql_string
from atlas.views import (
    create_outcome_views,
    create_stage_views,
    index_query,
    path_literals,
)

ROOT_VARIABLE = "atlas_outdir"
ATLAS_DIR = "atlas"
STAGED_DIR = "atlas/staged"
PARTS_DIR = "atlas/parts"  # {drop}.outcomes.parquet: a drop's outcome rows (write_drop_outcomes)
INDEX_FILE = "index.parquet"
DATABASE_FILE = "atlas.duckdb"
SHOWN_MISSING = 10
CLUSTERS_FILE = "clusters/clusters.parquet"  # under the outdir (workflow/rules/structural_common.smk)


class IncompleteAtlasError(RuntimeError):
    """A queued record has no prediction row: the index is not built."""


def _log(message: str) -> None:
    print(f"[atlas] {message}", file=sys.stderr, flush=True)


def outdir_of(staged_file: str | Path) -> Path:
    """The outdir of a staged output (OUTDIR/atlas/staged/FILE)."""
    path = Path(staged_file).resolve()
    if path.parent.as_posix().endswith("/" + STAGED_DIR):
        return path.parents[2]
    raise ValueError(f"{staged_file} is not under OUTDIR/{STAGED_DIR}/")


def glob_locations(outdir: Path, paths: Sequence[str | Path], stage: str) -> list[str]:
    """One `atlas_root() || '/rel/dir/*.parquet'` per folder of the given files (manifests: each file)."""
    relative = []
    for path in paths:
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(outdir):
            raise ValueError(f"{path} is not under the outdir {outdir}")
        relative.append(resolved.relative_to(outdir))
    if stage in ("manifest", "cluster_members"):  # files, not folders of chunk files
        targets = sorted({path.as_posix() for path in relative})
    else:
        targets = sorted({(path.parent / "*.parquet").as_posix() for path in relative})
    return [f"atlas_root() || {sql_string('/' + target)}" for target in targets]


def create_lookup_views(connection, outdir: Path, lookups: Sequence[str | Path]) -> None:
    """Views lookup_by_id and lookup_by_checksum over the drops' lookup files (atlas.lookup)."""
    from atlas.lookup import LOOKUP_COLUMNS
    from atlas.tables import MANIFEST

    for key in ("id", "checksum"):
        files = [path for path in lookups if Path(path).name.endswith(f".by_{key}.parquet")]
        if files:
            source = f"read_parquet([{', '.join(glob_locations(outdir, files, 'manifest'))}])"
        else:
            types = duckdb_columns(MANIFEST, LOOKUP_COLUMNS)
            nulls = ", ".join(f'CAST(NULL AS {kind}) AS "{name}"' for name, kind in types.items())
            source = f"(SELECT {nulls} WHERE false)"
        connection.execute(f"CREATE VIEW lookup_by_{key} AS SELECT * FROM {source}")


def chunk_files_table(connection, outdir: Path, predictions, novelty) -> None:
    """Table chunk_files: drop, chunk, and the outdir-relative path of its predictions and novelty file
    (`predictions/{drop}/{chunk}.parquet`), so a lookup reads one predictions file."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for stage, paths in (("predictions", predictions), ("novelty", novelty)):
        for path in paths:
            relative = Path(path).resolve().relative_to(outdir)
            rows.setdefault((relative.parent.name, relative.stem), {})[stage] = "/" + relative.as_posix()
    connection.execute(
        'CREATE TABLE chunk_files ("drop" VARCHAR, chunk VARCHAR, predictions VARCHAR, novelty VARCHAR)'
    )
    if rows:
        connection.executemany(
            "INSERT INTO chunk_files VALUES (?, ?, ?, ?)",
            [
                [drop, chunk, paths.get("predictions"), paths.get("novelty")]
                for (drop, chunk), paths in sorted(rows.items())
            ],
        )


def check_complete(connection) -> None:
    """Stop when a queued record has no prediction row (the accounting invariant)."""
    total = connection.execute("SELECT count(*) FROM outcomes WHERE outcome = 'pending'").fetchone()[0]
    if not total:
        return
    rows = connection.execute(
        f"""SELECT "drop", chunk, count(*), list(id ORDER BY id)[1:3] FROM outcomes
        WHERE outcome = 'pending' GROUP BY ALL ORDER BY "drop", chunk LIMIT {SHOWN_MISSING}"""
    ).fetchall()
    shown = "; ".join(
        f"{drop}/{chunk}: {n} ({', '.join(ids)}{', ...' if n > 3 else ''})" for drop, chunk, n, ids in rows
    )
    raise IncompleteAtlasError(
        f"{total} queued records have no prediction row (drop/chunk: missing ids): {shown}"
        + (" and more chunks" if len(rows) == SHOWN_MISSING else "")
        + ". Their chunk's predictions file lacks them: rerun the workflow to fold them."
    )


def index_counts(connection) -> dict[str, int]:
    row = connection.execute(
        """SELECT count(*), count(*) FILTER (outcome = 'ok'), count(*) FILTER (outcome = 'failed'),
            count(*) FILTER (high_confidence), count(*) FILTER (outcome = 'ok' AND novel),
            count(*) FILTER (high_confidence AND structurally_novel)
        FROM outcomes"""
    ).fetchone()
    names = ("queued", "ok", "failed", "high_confidence", "novel", "structurally_novel")
    return dict(zip(names, row, strict=True))


def _publish(staged: Path, published: Path) -> None:
    """Put `staged` at `published` in one rename: a hard link (or a copy) under a temporary name first."""
    tmp = published.with_name(f".{published.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(staged, tmp)
        except OSError:  # a file system without hard links
            shutil.copyfile(staged, tmp)
        os.replace(tmp, published)
    finally:
        tmp.unlink(missing_ok=True)


def _bounded_memory(connection, spill_folder: Path) -> None:
    """DuckDB within the job's memory (ATLAS_INDEX_MEMORY_LIMIT, set by the rules), spilling beyond it."""
    connection.execute(f"SET temp_directory = {sql_string(spill_folder / '.duckdb-spill')}")
    if limit := os.environ.get("ATLAS_INDEX_MEMORY_LIMIT"):
        connection.execute("SET memory_limit = ?", [limit])


def _outcome_views(
    connection, manifests, predictions, novelty, structural, cluster_table, min_plddt: float, min_ptm: float
) -> None:
    """Temporary stage and outcome views (atlas.views) over exactly these files."""
    create_stage_views(
        connection,
        {
            "manifest": path_literals(manifests),
            "predictions": path_literals(predictions),
            "novelty": path_literals(novelty),
            "structural": path_literals(structural),
            "cluster_members": path_literals(cluster_table),
        },
        temporary=True,
    )
    create_outcome_views(connection, min_plddt, min_ptm, temporary=True)


@functools.cache
def outcome_schema() -> str:
    """A digest of the `outcomes` view's columns and types (atlas.views): a part written by a version with
    other columns is made again (rule drop_outcomes takes it as a param, `atlas index` compares it)."""
    import duckdb

    with duckdb.connect(":memory:") as connection:
        _outcome_views(connection, [], [], [], [], [], 0.0, 0.0)
        columns = connection.execute("SELECT column_name, column_type FROM (DESCRIBE outcomes)").fetchall()
    return hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]


def part_settings(min_plddt: float, min_ptm: float) -> dict[str, str]:
    """What a drop's outcome part was computed with (its Parquet key-value metadata)."""
    return {
        "atlas.min_plddt": repr(float(min_plddt)),
        "atlas.min_ptm": repr(float(min_ptm)),
        "atlas.outcome_schema": outcome_schema(),
    }


def _written_with(part: str | Path, min_plddt: float, min_ptm: float) -> bool:
    """The part's key-value metadata holds these thresholds and this version's outcome columns."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(part).metadata or {}
    wanted = part_settings(min_plddt, min_ptm)
    return all(metadata.get(key.encode()) == value.encode() for key, value in wanted.items())


def check_parts(parts: Sequence[str | Path], min_plddt: float, min_ptm: float) -> None:
    """Stop, naming the part, when one was written with other thresholds or other outcome columns."""
    for part in parts:
        if not _written_with(part, min_plddt, min_ptm):
            raise ValueError(
                f"{part} was written with other thresholds or by another version of the outcome columns:"
                " make it again (snakemake --forcerun drop_outcomes, or delete it before `atlas index`)"
            )


def part_is_current(part: Path, inputs: Sequence[Path], min_plddt: float, min_ptm: float) -> bool:
    """For `atlas index` by hand: the part exists, was written with these settings, and is newer than its
    inputs."""
    if not part.exists() or not _written_with(part, min_plddt, min_ptm):
        return False
    built = part.stat().st_mtime_ns
    return all(Path(path).stat().st_mtime_ns <= built for path in inputs)


def _materialise_outcomes(connection) -> None:
    """One scan of the stage files: the accounting check, the counts and the rows written after it all read
    this table (three scans of every prediction's metrics otherwise)."""
    connection.execute("CREATE TEMP TABLE outcome_rows AS SELECT * FROM outcomes")
    connection.execute("CREATE OR REPLACE TEMP VIEW outcomes AS SELECT * FROM outcome_rows")


def write_drop_outcomes(
    manifest: str | Path,
    predictions: Sequence[str | Path],
    novelty: Sequence[str | Path],
    part: str | Path,
    min_plddt: float,
    min_ptm: float,
    structural: Sequence[str | Path] = (),
) -> dict[str, int]:
    """One drop's outcome rows (the `outcomes` view over this drop's own files: its queued records, their
    predictions, novelty and structural novelty) to `part`, after the drop's accounting check; returns its
    counts.

    A drop's outcomes depend on its files only: the split queues a sequence in one drop at most (a later
    drop marks it duplicate), so the index of all drops reads these parts, and adding a drop reads no earlier
    drop's predictions again. (A sequence queued in two drops anyway keeps each drop's own novelty and
    structural verdicts here; the index row is the earliest drop's, with that drop's verdicts.)"""
    import duckdb

    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    tmp = part.with_name(f".{part.name}.tmp-{os.getpid()}")
    with duckdb.connect(":memory:") as connection:
        _bounded_memory(connection, part.parent)
        _outcome_views(connection, [manifest], predictions, novelty, structural, [], min_plddt, min_ptm)
        _materialise_outcomes(connection)
        check_complete(connection)
        counts = index_counts(connection)
        settings = ", ".join(
            f"{sql_string(key)}: {sql_string(value)}"
            for key, value in part_settings(min_plddt, min_ptm).items()
        )
        try:
            connection.execute(
                f"COPY outcome_rows TO {sql_string(tmp)} (FORMAT parquet, KV_METADATA {{{settings}}})"
            )
            os.replace(tmp, part)
        finally:
            tmp.unlink(missing_ok=True)
    return counts


def build_index(
    manifests: Sequence[str | Path],
    predictions: Sequence[str | Path],
    novelty: Sequence[str | Path],
    index: str | Path,
    database: str | Path,
    drops: Sequence[str],
    min_plddt: float,
    min_ptm: float,
    novelty_computed: bool,
    lookups: Sequence[str | Path] = (),
    structural: Sequence[str | Path] = (),
    structural_computed: bool = False,
    clusters: str | Path | None = None,
    outcome_parts: Sequence[str | Path] = (),
    novelty_queries: str = "all",
) -> dict[str, int]:
    """Build the staged index and database from exactly these files, then publish both; returns counts.
    `lookups`: the drops' atlas.lookup files (`*.by_id.parquet`, `*.by_checksum.parquet`); `structural`: the
    chunks' structural novelty files (read when `structural_computed`); `clusters`: the cluster table.
    `outcome_parts`: each drop's outcome rows (write_drop_outcomes, with the same thresholds); given, the
    index reads them instead of every prediction (the workflow's way: a new drop makes its own part and
    the others are not read again); else the outcomes are computed here from the stage files.
    `novelty_queries`: which predictions the novelty files searched (config novelty.queries), recorded in
    atlas_info for the counts' wording."""
    import duckdb

    index, database = Path(index), Path(database)
    outdir = outdir_of(database)
    if outdir_of(index) != outdir:
        raise ValueError(f"{index} and {database} are not in the same {STAGED_DIR}/")
    novelty = list(novelty) if novelty_computed else []
    structural = list(structural) if structural_computed else []
    cluster_table = [clusters] if clusters else []
    index.parent.mkdir(parents=True, exist_ok=True)
    for stale in (index, database, Path(f"{database}.wal")):
        stale.unlink(missing_ok=True)  # a killed run's staged files; the published atlas is untouched

    with duckdb.connect(":memory:") as connection:
        _bounded_memory(connection, index.parent)
        if outcome_parts:  # compact files of metrics: the three reads below cost little
            check_parts(outcome_parts, min_plddt, min_ptm)
            # stage views over no file (binding one over 10^5 files reads every footer): the index query
            # needs only the cluster table beside the parts
            _outcome_views(connection, [], [], [], [], cluster_table, min_plddt, min_ptm)
            parts = ", ".join(path_literals(outcome_parts))
            connection.execute(
                f"CREATE OR REPLACE TEMP VIEW outcomes AS SELECT * FROM read_parquet([{parts}])"
            )
        else:
            _outcome_views(
                connection, manifests, predictions, novelty, structural, cluster_table, min_plddt, min_ptm
            )
            _materialise_outcomes(connection)
        check_complete(connection)
        counts = index_counts(connection)
        connection.execute(
            f"COPY ({index_query(list(drops), novelty_computed, structural_computed)}) "
            f"TO {sql_string(index)} (FORMAT parquet)"
        )
        counts["atlas"] = connection.execute(
            f"SELECT count(*) FROM read_parquet({sql_string(index)})"
        ).fetchone()[0]

    atlas_dir = outdir / ATLAS_DIR
    _publish(index, atlas_dir / INDEX_FILE)  # first: the database's `atlas` view reads it

    root = outdir.as_posix()
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            f"CREATE MACRO atlas_root() AS coalesce(getvariable({sql_string(ROOT_VARIABLE)}), "
            f"{sql_string(root)})"
        )
        create_stage_views(
            connection,
            {
                "manifest": glob_locations(outdir, manifests, "manifest"),
                "predictions": glob_locations(outdir, predictions, "predictions"),
                "novelty": glob_locations(outdir, novelty, "novelty"),
                "structural": glob_locations(outdir, structural, "structural"),
                "cluster_members": glob_locations(outdir, cluster_table, "cluster_members"),
            },
        )
        create_outcome_views(connection, min_plddt, min_ptm)
        create_lookup_views(connection, outdir, lookups)
        chunk_files_table(connection, outdir, predictions, novelty)
        connection.execute(
            "CREATE VIEW atlas AS SELECT * FROM read_parquet(atlas_root() || "
            f"{sql_string(f'/{ATLAS_DIR}/{INDEX_FILE}')})"
        )
        connection.execute(
            """CREATE TABLE atlas_info AS SELECT
                ?::DOUBLE AS min_plddt, ?::DOUBLE AS min_ptm, ?::BOOLEAN AS novelty_computed,
                ?::VARCHAR AS novelty_queries, ?::BOOLEAN AS structural_computed,
                ?::BOOLEAN AS clusters_computed,
                ?::VARCHAR[] AS drops, ?::BIGINT AS atlas_rows, ?::VARCHAR AS counts,
                ?::VARCHAR AS built_outdir, ?::TIMESTAMP AS built_at_utc, ?::VARCHAR AS paths""",
            [
                float(min_plddt),
                float(min_ptm),
                bool(novelty_computed),
                novelty_queries if novelty_computed else None,
                bool(structural_computed),
                bool(cluster_table),
                list(drops),
                counts["atlas"],
                json.dumps(counts),
                root,
                datetime.now(UTC).replace(tzinfo=None, microsecond=0),
                "views read atlas_root() || '/<path relative to the outdir>'; "
                f"after moving the outdir run: SET VARIABLE {ROOT_VARIABLE} = '/new/outdir'",
            ],
        )
        connection.execute("CHECKPOINT")
    _publish(database, atlas_dir / DATABASE_FILE)
    return counts


def log_counts(
    counts: dict[str, int],
    novelty_computed: bool,
    min_plddt: float,
    min_ptm: float,
    structural_computed: bool = False,
) -> str:
    return (
        f"{counts['queued']} queued records: {counts['ok']} folded ok, {counts['failed']} failed; "
        + (f"{counts['novel']} novel; " if novelty_computed else "novelty not computed; ")
        + f"{counts['high_confidence']} high confidence"
        + (
            f", {counts['structurally_novel']} of them structurally novel; "
            if structural_computed
            else "; structural novelty not computed; "
        )
        + f"{counts['atlas']} in the atlas (min_plddt {min_plddt}, min_ptm {min_ptm})"
    )


def _run_step(job, name: str, step) -> int:
    """Run `step()` (returns the line to log) as a rule's script: DuckDB within the job's memory request (it
    would take 80% of the node's), stderr to the rule's log, errors logged and returned as 1."""
    import contextlib

    import duckdb

    os.environ.setdefault("ATLAS_INDEX_MEMORY_LIMIT", f"{int(job.resources.mem_mb * 3 / 4)}MB")
    with open(job.log[0], "w") as log, contextlib.redirect_stderr(log):
        try:
            _log(step())
        except (IncompleteAtlasError, OSError, ValueError, duckdb.Error) as error:
            print(f"{name}: error: {error}", file=sys.stderr)
            return 1
    return 0


def run_index_step(job) -> int:
    """Entry point of rule atlas_index (workflow/scripts/atlas_index.py): `job` is the script's `snakemake`
    object; its inputs manifests/lookups/parts/predictions/novelty/structural/clusters, outputs
    index/database, params drops/min_plddt/min_ptm/novelty/novelty_queries/structural and log."""
    params = job.params

    def step() -> str:
        counts = build_index(
            job.input.manifests,
            job.input.predictions,
            job.input.novelty,
            job.output.index,
            job.output.database,
            list(params.drops),
            params.min_plddt,
            params.min_ptm,
            bool(params.novelty),
            job.input.lookups,
            structural=job.input.structural,
            structural_computed=bool(params.structural),
            clusters=job.input.clusters or None,
            outcome_parts=job.input.parts,
            novelty_queries=params.novelty_queries,
        )
        structural = bool(params.structural)
        return log_counts(counts, bool(params.novelty), params.min_plddt, params.min_ptm, structural)

    return _run_step(job, "atlas index", step)


def run_drop_outcomes_step(job) -> int:
    """Entry point of rule drop_outcomes (workflow/scripts/drop_outcomes.py): inputs manifest/predictions/
    novelty/structural of one drop, output part, params min_plddt/min_ptm, log."""
    params, files = job.params, job.input

    def step() -> str:
        counts = write_drop_outcomes(
            files.manifest,
            files.predictions,
            files.novelty,
            job.output.part,
            params.min_plddt,
            params.min_ptm,
            files.structural,
        )
        return f"{job.wildcards.drop}: {json.dumps(counts)}"

    return _run_step(job, "atlas drop outcomes", step)


def drop_stage_files(
    connection,
    outdir: Path,
    drop: str,
    predictions_dir: str,
    novelty_computed: bool,
    structural_computed: bool = False,
) -> dict[str, list[Path]]:
    """The files a finished drop's manifest names: the manifest, its chunks' predictions, novelty and
    structural files."""
    manifest = outdir / "chunks" / drop / "manifest.parquet"
    chunks = connection.execute(
        f"SELECT DISTINCT chunk FROM read_parquet({sql_string(manifest)})"
        " WHERE status = 'queued' ORDER BY chunk"
    ).fetchall()
    return {
        "manifests": [manifest],
        "predictions": [outdir / predictions_dir / drop / f"{chunk}.parquet" for (chunk,) in chunks],
        "novelty": [outdir / "novelty" / drop / f"{chunk}.parquet" for (chunk,) in chunks]
        if novelty_computed
        else [],
        "structural": [outdir / "structural" / drop / f"{chunk}.parquet" for (chunk,) in chunks]
        if structural_computed
        else [],
    }


def index_main(argv: list[str]) -> int:
    import argparse

    import duckdb

    from atlas.config import settings
    from atlas.counts import NOVEL_LABELS
    from atlas.lookup import write_lookups
    from atlas.preflight import predictions_key

    parser = argparse.ArgumentParser(
        prog="atlas index", description="Build the atlas of a finished outdir by hand (see atlas.index)."
    )
    parser.add_argument("--outdir", required=True, type=Path)
    parser.add_argument("--drops", nargs="+", required=True, help="drop names, in arrival order")
    config = settings()  # ./config.yaml over the schema defaults
    parser.add_argument(
        "--predictions-dir",
        default=f"predictions/{predictions_key(config['model'], config['num_recycles'])}",
        help="under outdir (default: the prediction set of ./config.yaml's model, %(default)s)",
    )
    parser.add_argument("--min-plddt", type=float, default=config["min_plddt"])
    parser.add_argument("--min-ptm", type=float, default=config["min_ptm"])
    parser.add_argument("--novelty", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument(
        "--novelty-queries",
        choices=list(NOVEL_LABELS),
        default=config["novelty"]["queries"],
        help="which predictions the novelty files searched (default: ./config.yaml's, %(default)s)",
    )
    parser.add_argument(
        "--structural",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="read the structural novelty files (structural/{drop}/{chunk}.parquet)",
    )
    parser.add_argument(
        "--clusters",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="read the cluster table (clusters/clusters.parquet)",
    )
    args = parser.parse_args(argv)
    outdir = args.outdir
    try:
        files: dict[str, list[Path]] = {"manifests": [], "predictions": [], "novelty": [], "structural": []}
        lookups, parts = [], []
        with duckdb.connect(":memory:") as connection:
            for drop in args.drops:
                own = drop_stage_files(
                    connection, outdir, drop, args.predictions_dir, args.novelty, args.structural
                )
                for stage, paths in own.items():
                    files[stage] += paths
                manifest = own["manifests"][0]
                paths = [
                    outdir / ATLAS_DIR / "lookup" / f"{drop}.by_{key}.parquet" for key in ("id", "checksum")
                ]
                if not all(path.exists() for path in paths):
                    write_lookups(manifest, *paths)
                lookups += paths
                # the drop's outcome part, made again only when its files or the thresholds changed
                part = outdir / PARTS_DIR / f"{drop}.outcomes.parquet"
                inputs = [manifest, *own["predictions"], *own["novelty"], *own["structural"]]
                if not part_is_current(part, inputs, args.min_plddt, args.min_ptm):
                    write_drop_outcomes(
                        manifest,
                        own["predictions"],
                        own["novelty"],
                        part,
                        args.min_plddt,
                        args.min_ptm,
                        own["structural"],
                    )
                parts.append(part)
        staged = outdir / STAGED_DIR
        counts = build_index(
            files["manifests"],
            files["predictions"],
            files["novelty"],
            staged / INDEX_FILE,
            staged / DATABASE_FILE,
            args.drops,
            args.min_plddt,
            args.min_ptm,
            args.novelty,
            lookups,
            structural=files["structural"],
            structural_computed=args.structural,
            clusters=outdir / CLUSTERS_FILE if args.clusters else None,
            outcome_parts=parts,
            novelty_queries=args.novelty_queries,
        )
    except (IncompleteAtlasError, OSError, ValueError, duckdb.Error) as error:
        print(f"atlas index: error: {error}", file=sys.stderr)
        return 1
    _log(log_counts(counts, args.novelty, args.min_plddt, args.min_ptm, args.structural))
    return 0
