"""`atlas report`: summary.json, the PNG plots and index.html, a single self-contained page.

`write_report(files, report_dir, settings)` reads exactly the given stage files (the rule's declared inputs,
through workflow/scripts/atlas_report.py: `run_report_step`) with DuckDB, selecting only the columns needed
(never the structures), and writes under report_dir. Its parts, one concept each: the counts
(atlas.counts, the same numbers as `atlas stats`), the plot data (atlas.plotdata), the figures
(atlas.plots), the page (atlas.page, a Jinja2 template) and the software versions (atlas.versions).

The fold throughput comes from the predictions files' own metadata (atlas.tables.FOLD_SECONDS_KEY), written
by each fold job: no undeclared file (such as a Snakemake benchmark) is read.

`atlas report [--outdir DIR] [--report-dir DIR]` does the same by hand for an indexed outdir: drops,
thresholds, novelty and structural novelty settings from its atlas database (`atlas_info`), the chunk files
its index read (`chunk_files`) as they are now; the other settings from ./config.yaml.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUMMARY_FILE = "summary.json"
HTML_FILE = "index.html"

# plot key -> (file name under report/, heading, caption). workflow/rules/report.smk names the same files.
PLOTS: dict[str, tuple[str, str, str]] = {
    "plddt_histogram": (
        "plddt_histogram.png",
        "Mean pLDDT",
        "Distribution of the mean pLDDT (0-100) of every successfully folded prediction; the dashed line is "
        "the high-confidence threshold min_plddt.",
    ),
    "plddt_ptm_density": (
        "plddt_ptm_density.png",
        "Mean pLDDT vs pTM",
        "Density of predictions by mean pLDDT (x) and pTM (y), as in the ESM Metagenomic Atlas paper. The "
        "shaded top-right quadrant (mean pLDDT >= min_plddt and pTM >= min_ptm) holds the high-confidence "
        "predictions.",
    ),
    "length_by_status": (
        "length_by_status.png",
        "Sequence length by status",
        "Length distribution of the input records by manifest status (queued, duplicate, rejected) and of "
        "the folded predictions (ok, failed); dashed vertical lines are the min_length/max_length limits.",
    ),
    "novelty_identity": (
        "novelty_identity.png",
        "Identity to the nearest reference hit",
        "Sequence identity of each folded prediction to its best reference hit (MMseqs2); predictions with "
        "no hit are counted in the box. A prediction is novel when no hit reaches both max_identity and "
        "min_coverage.",
    ),
    "structure_tm": (
        "structure_tm.png",
        "TM-score to the nearest reference structure",
        "TM-score (normalised by the prediction's length) of the best reference structure that TM-align "
        "verified among the 3Di search's top hits, for each confident prediction; the dashed line is "
        "min_tm: below it, or with no verified hit, the fold is novel.",
    ),
    "fold_throughput": (
        "fold_throughput.png",
        "Fold throughput",
        "Residues folded per second of each fold job (residues it folded / seconds it spent folding, as "
        "recorded in its predictions file) against the chunk's mean sequence length.",
    ),
}


@dataclass
class StageFiles:
    """The stage outputs a report reads (paths as given: local copies under remote storage too)."""

    manifests: list[str]
    predictions: list[str]
    novelty: list[str] = field(default_factory=list)
    structural: list[str] = field(default_factory=list)


@dataclass
class ReportSettings:
    """What the workflow ran with (every value from the config, through the rule's params)."""

    drops: list[str]
    min_plddt: float
    min_ptm: float
    novelty: bool
    max_identity: float
    min_coverage: float
    min_length: int
    max_length: int
    structural: bool = False
    min_tm: float = 0.5
    novelty_queries: str = "all"  # which predictions were searched for novelty: all, or only the confident


def throughput_data(prediction_files: Sequence[str | Path]) -> tuple[list[dict], dict]:
    """Per fold job with timing in its predictions file: residues, seconds, residues/s; and overall."""
    import pyarrow.parquet as pq

    from atlas.tables import FOLD_RESIDUES_KEY, FOLD_SECONDS_KEY

    chunks = []
    for path in prediction_files:
        metadata = pq.read_metadata(path)
        timing = metadata.schema.to_arrow_schema().metadata or {}
        seconds = float(timing.get(FOLD_SECONDS_KEY.encode(), 0) or 0)
        residues = int(timing.get(FOLD_RESIDUES_KEY.encode(), 0) or 0)
        if seconds <= 0 or residues <= 0:
            continue
        path = Path(path)
        chunks.append(
            {
                "drop": path.parent.name,
                "chunk": path.name.removesuffix(".parquet"),
                "sequences": metadata.num_rows,
                "residues": residues,
                "mean_length": residues / max(metadata.num_rows, 1),
                "seconds": round(seconds, 3),
                "residues_per_second": round(residues / seconds, 3),
            }
        )
    residues = sum(row["residues"] for row in chunks)
    seconds = sum(row["seconds"] for row in chunks)
    overall = {
        "chunks": len(chunks),
        "residues": residues,
        "seconds": round(seconds, 3),
        "residues_per_second": round(residues / seconds, 3) if seconds else None,
    }
    return chunks, overall


def _index_rows(index: str | Path | None) -> int | None:
    if index is None or not Path(index).is_file():
        return None
    import pyarrow.parquet as pq

    return pq.read_metadata(index).num_rows


def write_report(
    files: StageFiles, report_dir: str | Path, settings: ReportSettings, index: str | Path | None = None
) -> dict:
    """Write summary.json, the PNG plots and index.html under report_dir; returns the summary."""
    import duckdb

    from atlas import plotdata, plots
    from atlas.counts import stage_counts
    from atlas.page import render_html
    from atlas.versions import software_versions
    from atlas.views import create_outcome_views, create_stage_views, path_literals

    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    novelty_files = files.novelty if settings.novelty else []
    structural_files = files.structural if settings.structural else []
    with duckdb.connect(":memory:") as connection:
        create_stage_views(
            connection,
            {
                "manifest": path_literals(files.manifests),
                "predictions": path_literals(files.predictions),
                "novelty": path_literals(novelty_files),
                "structural": path_literals(structural_files),
            },
        )
        create_outcome_views(connection, settings.min_plddt, settings.min_ptm)
        counts = stage_counts(
            connection,
            settings.drops,
            settings.novelty,
            settings.min_plddt,
            settings.min_ptm,
            settings.structural,
            settings.novelty_queries,
        )
        figures = {}
        edges, hist, per_drop = plotdata.plddt_histogram_data(connection, counts["drops"])
        figures["plddt_histogram"] = plots.plddt_histogram(edges, hist, per_drop, settings.min_plddt)
        x, y, w = plotdata.density_data(connection)
        figures["plddt_ptm_density"] = plots.plddt_ptm_density(
            x, y, w, settings.min_plddt, settings.min_ptm, counts["total"]["high_confidence"]
        )
        edges, series = plotdata.length_data(connection)
        figures["length_by_status"] = plots.length_by_status(
            edges, series, [settings.min_length, settings.max_length]
        )
        ident = plotdata.identity_data(connection, settings.novelty)
        figures["novelty_identity"] = plots.identity_histogram(
            ident["edges"],
            ident["counts"],
            ident["counts_high_confidence"],
            ident["no_hit"],
            ident["no_hit_hc"],
            settings.max_identity if settings.novelty else None,
            settings.novelty,
            settings.novelty_queries,
        )
        tm = plotdata.structure_tm_data(connection, settings.structural)
        figures["structure_tm"] = plots.structure_tm_histogram(
            tm["edges"],
            tm["counts"],
            tm["searched"],
            tm["no_hit"],
            tm["novel"],
            settings.min_tm,
            settings.structural,
        )
        models = plotdata.models_used(connection)
        top = plotdata.top_predictions(connection, settings.novelty)
        failed_total, failed = plotdata.failed_predictions(connection)
    chunks, overall = throughput_data(files.predictions)
    figures["fold_throughput"] = plots.fold_throughput(chunks, overall["residues_per_second"])
    images = {key: plots.save_png(figure, report_dir / PLOTS[key][0]) for key, figure in figures.items()}

    thresholds: dict = {"min_plddt": settings.min_plddt, "min_ptm": settings.min_ptm}
    if settings.novelty:
        thresholds.update(max_identity=settings.max_identity, min_coverage=settings.min_coverage)
    if settings.structural:
        thresholds.update(min_tm=settings.min_tm)
    thresholds.update(min_length=settings.min_length, max_length=settings.max_length)
    summary = {
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "outdir": str(report_dir.parent),
        "drops": counts["drops"],
        "novelty_computed": settings.novelty,
        "novelty_queries": settings.novelty_queries,
        "structural_computed": settings.structural,
        "structure_tm": {key: tm[key] for key in ("searched", "no_hit", "novel")},
        "thresholds": thresholds,
        "model": models[0]["model"] if len(models) == 1 else [m["model"] for m in models] or None,
        "models": models,
        "counts": {
            "high_confidence_rule": counts["high_confidence_rule"],
            "invariant": counts["invariant"],
            "total": counts["total"],
            "per_drop": counts["per_drop"],
        },
        "atlas_index_rows": _index_rows(index),
        "fold_throughput": {**overall, "per_chunk": chunks},
        "top_predictions": top,
        "failed_predictions": {"total": failed_total, "first": failed},
        "software": software_versions(),
        "plots": {key: PLOTS[key][0] for key in images},
        "html": HTML_FILE,
    }
    (report_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (report_dir / HTML_FILE).write_text(render_html(summary, images, PLOTS), encoding="utf-8")
    return summary


def _print_summary(summary: dict, report_dir: Path) -> None:
    from atlas.counts import format_counts

    counts = {"drops": summary["drops"], **summary["counts"]}
    print(format_counts(counts))
    print(
        f"atlas report: wrote {report_dir / SUMMARY_FILE}, {report_dir / HTML_FILE}"
        f" and {len(summary['plots'])} plots"
    )


def run_report_step(job) -> int:
    """Entry point of rule report (workflow/scripts/atlas_report.py): `job` is the script's `snakemake`
    object; inputs manifests/predictions/novelty/structural/index, output summary (the others beside it),
    params the ReportSettings fields, and log."""
    import contextlib

    with open(job.log[0], "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        settings = ReportSettings(**{name: job.params[name] for name in ReportSettings.__dataclass_fields__})
        settings.drops = list(settings.drops)
        files = StageFiles(
            list(job.input.manifests),
            list(job.input.predictions),
            list(job.input.novelty),
            list(job.input.structural),
        )
        report_dir = Path(job.output.summary).parent
        summary = write_report(files, report_dir, settings, index=job.input.index)
        _print_summary(summary, report_dir)
    return 0


def report_main(argv: list[str]) -> int:
    """`atlas report` by hand, for an indexed outdir (see the module docstring)."""
    from atlas.config import settings as config_settings
    from atlas.query import AtlasError, add_outdir_argument, atlas_info, connect, resolve_outdir

    parser = argparse.ArgumentParser(
        prog="atlas report", description="summary.json, PNG plots and index.html of an indexed outdir"
    )
    add_outdir_argument(parser)
    parser.add_argument("--report-dir", default=None, help="where to write (default: OUTDIR/report)")
    args = parser.parse_args(argv)
    try:
        outdir = Path(resolve_outdir(args.outdir))
        connection = connect(outdir)
        try:
            info = atlas_info(connection)
            # the chunk files the index read (paths relative to the outdir)
            chunks = connection.execute(
                'SELECT "drop", chunk, predictions, novelty FROM chunk_files ORDER BY "drop", chunk'
            ).fetchall()
        finally:
            connection.close()
    except AtlasError as error:
        print(f"atlas report: error: {error}", file=sys.stderr)
        return 1
    config = config_settings()
    structural = bool(info["structural_computed"])
    drops = list(info["drops"])
    files = StageFiles(
        [str(outdir / "chunks" / drop / "manifest.parquet") for drop in drops],
        [str(outdir / predictions.lstrip("/")) for _, _, predictions, _ in chunks if predictions],
        [str(outdir / novelty.lstrip("/")) for _, _, _, novelty in chunks if novelty],
        [str(outdir / "structural" / drop / f"{chunk}.parquet") for drop, chunk, *_ in chunks]
        if structural
        else [],
    )
    settings = ReportSettings(
        drops=drops,
        min_plddt=info["min_plddt"],
        min_ptm=info["min_ptm"],
        novelty=info["novelty_computed"],
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        min_length=config["min_length"],
        max_length=config["max_length"],
        structural=structural,
        min_tm=config["structural_novelty"]["min_tm"],
        novelty_queries=info["novelty_queries"],
    )
    report_dir = Path(args.report_dir) if args.report_dir else outdir / "report"
    summary = write_report(files, report_dir, settings, index=outdir / "atlas" / "index.parquet")
    _print_summary(summary, report_dir)
    return 0
