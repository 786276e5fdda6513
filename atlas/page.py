"""The report's HTML page, rendered with Jinja2 from atlas/templates/ (package data): one self-contained
file, the CSS inline and the plots as data URIs."""

from __future__ import annotations

import base64
from importlib import resources
from urllib.parse import quote

from atlas.counts import format_invariant, stage_labels

# where the atlas explorer serves one structure, relative to the page's server
STRUCTURE_URL = "/structure/{id}"


def number(value) -> str:
    """A table cell: thousands separators, three significant digits below 1000, n/a for None."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _template():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("atlas", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = number
    return environment.get_template("report.html.j2")


def render_html(summary: dict, images: dict[str, bytes], plots: dict[str, tuple[str, str, str]]) -> str:
    """The page of a summary (atlas.report.write_report); `plots` maps a key to (file, heading, caption)."""
    counts = summary["counts"]
    drops = summary["drops"]
    total = counts["total"]
    thresholds = summary["thresholds"]
    cards = [
        ("input records", total["records"]),
        ("folded (ok)", total["folded"]),
        ("fold failed", total["failed"]),
        (
            f"high confidence (pLDDT ≥ {thresholds['min_plddt']:g}, pTM ≥ {thresholds['min_ptm']:g})",
            total["high_confidence"],
        ),
        (
            "high confidence and novel",
            total["high_confidence_novel"] if summary["novelty_computed"] else "not computed",
        ),
        (
            "high confidence, novel by structure",
            total["high_confidence_structurally_novel"]
            if summary["structural_computed"]
            else "not computed (no structure reference)",
        ),
    ]
    stage_rows = [
        [label, *(counts["per_drop"][d][key] for d in drops), total[key]]
        for key, label in stage_labels(counts)
    ]
    stage_rows.append(
        [
            "folded residues",
            *(counts["per_drop"][d]["folded_residues"] for d in drops),
            total["folded_residues"],
        ]
    )
    reason_rows = [
        [reason, *(counts["per_drop"][d]["rejected_by_reason"].get(reason, 0) for d in drops), n]
        for reason, n in total["rejected_by_reason"].items()
    ]
    threshold_rows = [[key, value] for key, value in thresholds.items()]
    threshold_rows.append(["novelty computed", summary["novelty_computed"]])
    if summary["novelty_computed"]:
        threshold_rows.append(["novelty searched for", summary.get("novelty_queries", "all")])
    threshold_rows.append(["structural novelty computed", summary["structural_computed"]])
    if summary.get("atlas_index_rows") is not None:
        threshold_rows.append(["rows in atlas/index.parquet", summary["atlas_index_rows"]])
    throughput = summary["fold_throughput"]
    figures = [
        {
            "key": key,
            "filename": filename,
            "heading": heading,
            "caption": caption,
            "data_uri": "data:image/png;base64," + base64.b64encode(images[key]).decode("ascii"),
        }
        for key, (filename, heading, caption) in plots.items()
        if key in images
    ]
    return _template().render(
        summary=summary,
        counts=counts,
        drops=drops,
        css=resources.files("atlas").joinpath("templates/report.css").read_text(encoding="utf-8"),
        cards=cards,
        invariant=format_invariant(total) + ".",
        stage_rows=stage_rows,
        reason_rows=reason_rows,
        figures=figures,
        threshold_rows=threshold_rows,
        model_rows=[[m["model"], m["num_recycles"], m["predictions"]] for m in summary["models"]],
        throughput_row=[
            throughput["chunks"],
            throughput["residues"],
            throughput["seconds"],
            throughput["residues_per_second"],
        ],
        top=[
            {**row, "href": STRUCTURE_URL.format(id=quote(row["id"], safe=""))}
            for row in summary["top_predictions"]
        ],
        failed=summary["failed_predictions"],
        failed_rows=[
            [row["drop"], row["chunk"], row["id"], row["error"]]
            for row in summary["failed_predictions"]["first"]
        ],
        software_rows=[[name, version or "not installed"] for name, version in summary["software"].items()],
    )
