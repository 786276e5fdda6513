"""`atlas stats [--outdir DIR] [--json]`: counts per stage and drop, and the accounting invariant.

The numbers are atlas.counts.stage_counts, the same as the report's summary.json. With an atlas database
(atlas/atlas.duckdb) they are counted through its views, with the thresholds, novelty setting and drops
it was built with; its views read the drops' folders as they are now, so a rerun in progress
shows. Before the first index, they are counted over the manifests under OUTDIR/chunks and the predictions
(of the configured model's set) and novelty files beside them, with the thresholds of ./config.yaml or the
config schema's defaults. Only metrics are read, never the structures.

Structural novelty (atlas.structural) adds two rows: confident predictions with a novel fold, and with a
novel sequence and a novel fold. Without a structure reference the step is skipped, and the caption says so
(the rows read n/a, never 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from atlas.config import settings
from atlas.counts import format_counts, stage_counts
from atlas.preflight import predictions_key
from atlas.query import (
    AtlasError,
    add_outdir_argument,
    atlas_info,
    connect,
    database_path,
    resolve_outdir,
)
from atlas.sql import sql_string
from atlas.views import create_outcome_views, create_stage_views


def _counts_from_database(outdir: str | Path) -> dict:
    connection = connect(outdir)
    try:
        info = atlas_info(connection)
        return stage_counts(
            connection,
            info["drops"],
            info["novelty_computed"],
            info["min_plddt"],
            info["min_ptm"],
            info["structural_computed"],
            info["novelty_queries"],
        )
    finally:
        connection.close()


def _counts_from_files(outdir: str | Path) -> dict:
    import duckdb

    root = Path(outdir)
    drops = sorted(path.parent.name for path in root.glob("chunks/*/manifest.parquet"))
    config = settings()
    novelty = any((root / "novelty" / drop).is_dir() for drop in drops)
    structural = any((root / "structural" / drop).is_dir() for drop in drops)
    # the prediction set of the configured model (predictions/{model key}/{drop}/)
    stage_folders = {
        "predictions": root / "predictions" / predictions_key(config["model"], config["num_recycles"]),
        "novelty": root / "novelty",
        "structural": root / "structural",
    }

    def folders(stage: str) -> list[str]:
        return [
            sql_string((stage_folders[stage] / drop).resolve() / "*.parquet")
            for drop in drops
            if any((stage_folders[stage] / drop).glob("*.parquet"))
        ]

    with duckdb.connect(":memory:") as connection:
        manifests = [sql_string((root / "chunks" / drop / "manifest.parquet").resolve()) for drop in drops]
        create_stage_views(
            connection,
            {
                "manifest": manifests,
                "predictions": folders("predictions"),
                "novelty": folders("novelty"),
                "structural": folders("structural"),
            },
        )
        create_outcome_views(connection, config["min_plddt"], config["min_ptm"])
        return stage_counts(
            connection,
            drops,
            novelty,
            config["min_plddt"],
            config["min_ptm"],
            structural_computed=structural,
            novelty_queries=config["novelty"]["queries"],
        )


def counts_of(outdir: str | Path) -> dict:
    """stage_counts of an outdir: through its atlas database when there is one, else over its files."""
    import duckdb

    try:
        if database_path(outdir).is_file():
            return _counts_from_database(outdir)
        return _counts_from_files(outdir)
    except (duckdb.Error, KeyError) as error:
        raise AtlasError(str(error)) from error


def format_stats(stats: dict, outdir: str | Path) -> str:
    thresholds = stats["thresholds"]
    novelty = "novelty not computed (no reference)"
    if stats["novelty_computed"]:
        novelty = (
            "novelty computed for the high-confidence predictions only (novelty.queries: confident), so"
            " 'novel' counts only them"
            if stats.get("novelty_queries") == "confident"
            else "novelty computed for every sequence (novelty.queries: all)"
        )
    structural = (
        "structural novelty computed"
        if stats.get("structural_computed")
        else "structural novelty not computed (no structure reference: structural_novelty.reference is empty)"
    )
    caption = (
        f"atlas {outdir}: high confidence = status ok, mean_plddt >= {thresholds['min_plddt']:g} and "
        f"ptm >= {thresholds['min_ptm']:g}; {novelty}; {structural}"
    )
    return f"{caption}\n\n{format_counts(stats)}"


def stats_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas stats", description="counts per stage, per drop, in total")
    add_outdir_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    try:
        outdir = resolve_outdir(args.outdir)
        if not (Path(outdir) / "chunks").is_dir():
            raise AtlasError(f"nothing under {outdir}/chunks: run the workflow first (or pass --outdir)")
        stats = counts_of(outdir)
    except AtlasError as error:
        print(f"atlas stats: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats, outdir))
    return 0
