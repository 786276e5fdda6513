"""The report's figures, drawn with matplotlib's Agg backend from pre-binned data.

Every function takes counts that `atlas.report` computed in DuckDB (so a figure never holds one point per
prediction, whatever the size of the atlas) and returns a Figure. Empty input gives a figure with a clear
"no data" panel instead of an exception. `save_png` writes with ``bbox_inches="tight"`` so nothing is clipped.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

FIGSIZE = (7.5, 4.8)
DPI = 120
THRESHOLD_STYLE = {"color": "#c0392b", "linestyle": "--", "linewidth": 1.5}
# Colour-blind safe (Okabe-Ito) colours for the manifest and fold statuses.
STATUS_COLORS = {
    "queued": "#0072B2",
    "duplicate": "#E69F00",
    "rejected": "#333333",
    "folded (ok)": "#009E73",
    "folded (failed)": "#CC79A7",
}
DROP_CYCLE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _figure() -> tuple[Figure, Axes]:
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def no_data(ax: Axes, message: str) -> None:
    """Mark an axes as holding no data, in words a reader cannot miss, on a plain 0-1 y axis."""
    ax.set_ylim(0, 1)
    ax.text(
        0.5,
        0.5,
        message,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=13,
        color="#555555",
        wrap=True,
        bbox={"boxstyle": "round,pad=0.6", "facecolor": "#f4f4f4", "edgecolor": "#bbbbbb"},
    )


def _corner_note(ax: Axes, text: str, right: bool = False) -> None:
    """A boxed note in the top left (or right) corner of the axes."""
    ax.text(
        0.98 if right else 0.02,
        0.97,
        text,
        transform=ax.transAxes,
        ha="right" if right else "left",
        va="top",
        fontsize=9,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"},
    )


def _finish(fig: Figure, ax: Axes) -> Figure:
    """The legend below the axes (when anything is labelled), a tight layout."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, frameon=False)
    fig.tight_layout()
    return fig


def _fmt(n: float) -> str:
    return f"{int(n):,}"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def plddt_histogram(
    edges: np.ndarray, counts: np.ndarray, per_drop: Mapping[str, np.ndarray], min_plddt: float
) -> Figure:
    """Histogram of mean pLDDT of the folded predictions, threshold marked."""
    fig, ax = _figure()
    total = int(counts.sum())
    ax.set_xlim(0, 100)
    ax.set_xlabel("mean pLDDT (0-100)")
    ax.set_ylabel("predictions per 1-pLDDT bin")
    ax.set_title(f"Mean pLDDT of folded predictions (n = {_fmt(total)})")
    ax.axvline(min_plddt, label=f"min_plddt = {min_plddt:g}", **THRESHOLD_STYLE)
    if total == 0:
        no_data(ax, "no data: no folded predictions")
    else:
        ax.stairs(counts, edges, fill=True, color="#9ecae1", label="all drops")
        if 1 < len(per_drop) <= len(DROP_CYCLE):  # per-drop outlines while they stay readable
            for i, (drop, drop_counts) in enumerate(per_drop.items()):
                if drop_counts.sum():
                    color = DROP_CYCLE[i % len(DROP_CYCLE)]
                    ax.stairs(drop_counts, edges, color=color, linewidth=1.2, label=drop)
        above = int(counts[edges[:-1] >= min_plddt].sum())
        _corner_note(ax, f"mean pLDDT >= {min_plddt:g}: {_fmt(above)} ({_pct(above, total)})")
        ax.set_ylim(0, max(1, counts.max()) * 1.15)
    return _finish(fig, ax)


def plddt_ptm_density(
    plddt: np.ndarray,
    ptm: np.ndarray,
    weights: np.ndarray,
    min_plddt: float,
    min_ptm: float,
    high_confidence: int,
) -> Figure:
    """Mean pLDDT against pTM as a hexbin density (ESM Atlas style), the high-confidence quadrant marked.

    `plddt`, `ptm` are the centres of fine bins and `weights` their counts, so the hexagons sum exact counts.
    """
    fig, ax = _figure()
    total = int(weights.sum())
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean pLDDT (0-100)")
    ax.set_ylabel("pTM (0-1)")
    ax.set_title(f"Prediction confidence: mean pLDDT vs pTM (n = {_fmt(total)})")
    if total == 0:
        no_data(ax, "no data: no folded predictions")
    else:
        coll = ax.hexbin(
            plddt,
            ptm,
            C=weights,
            reduce_C_function=np.sum,
            gridsize=(50, 19),  # about regular hexagons in this axes aspect
            extent=(0, 100, 0, 1),
            cmap="viridis",
            mincnt=1,
            linewidths=0.2,
        )
        values = coll.get_array()
        vmax = float(values.max()) if values is not None and values.size else 1.0
        coll.set_norm(LogNorm(vmin=1, vmax=max(vmax, 2.0)))
        colorbar = fig.colorbar(coll, ax=ax, pad=0.02)
        colorbar.set_label("predictions per hexagon (log scale)")
        top = max(vmax, 2.0)
        ticks = [m * 10**e for e in range(int(math.log10(top)) + 1) for m in (1, 2, 5) if m * 10**e <= top]
        colorbar.set_ticks(ticks)
        colorbar.ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
        colorbar.ax.yaxis.set_minor_formatter(NullFormatter())
    ax.add_patch(
        Rectangle(
            (min_plddt, min_ptm),
            100 - min_plddt,
            1 - min_ptm,
            facecolor="#c0392b",
            alpha=0.07,
            edgecolor="#c0392b",
            linewidth=1.0,
            zorder=0.5,
        )
    )
    ax.add_patch(  # the quadrant's outline, drawn over the hexagons
        Rectangle(
            (min_plddt, min_ptm),
            100 - min_plddt,
            1 - min_ptm,
            facecolor="none",
            edgecolor="#c0392b",
            linewidth=2.0,
            zorder=3,
            clip_on=False,
            label=f"high confidence: {_fmt(high_confidence)} ({_pct(high_confidence, total)})",
        )
    )
    ax.axvline(min_plddt, label=f"min_plddt = {min_plddt:g}", **THRESHOLD_STYLE)
    ax.axhline(min_ptm, label=f"min_ptm = {min_ptm:g}", **{**THRESHOLD_STYLE, "linestyle": ":"})
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def length_by_status(
    edges: np.ndarray, series: Mapping[str, np.ndarray], length_limits: Sequence[float]
) -> Figure:
    """Sequence length distributions of the manifest statuses and of the folded ok/failed predictions."""
    fig, ax = _figure()
    ax.set_xlabel("sequence length (residues, log scale)")
    ax.set_ylabel("sequences per bin")
    ax.set_title("Sequence length by status")
    nonempty = {name: counts for name, counts in series.items() if counts.sum() > 0}
    if not nonempty:
        no_data(ax, "no data: no manifest records")
        ax.set_xscale("log")
        ax.set_xlim(1, 2000)
    else:
        ax.set_xscale("log")
        peak = 1
        for name, counts in series.items():
            total = int(counts.sum())
            if total == 0:
                continue
            peak = max(peak, int(counts.max()))
            color = STATUS_COLORS.get(name)
            style = "--" if name.startswith("folded") else "-"
            ax.stairs(
                counts,
                edges,
                color=color,
                linewidth=1.6,
                linestyle=style,
                label=f"{name} (n = {_fmt(total)})",
            )
        smallest = min(int(c[c > 0].min()) for c in nonempty.values())
        if peak / max(smallest, 1) > 100:
            ax.set_yscale("log")
            ax.set_ylim(0.7, peak * 2.5)
        else:
            ax.set_ylim(0, peak * 1.2)
        low = min([edges[0], *length_limits])
        high = max([edges[-1], *length_limits])
        ax.set_xlim(low / 1.25, high * 1.25)
    for i, limit in enumerate(length_limits):
        label = "length limits (" + ", ".join(f"{v:g}" for v in length_limits) + ")" if i == 0 else None
        ax.axvline(limit, label=label, **THRESHOLD_STYLE)
    return _finish(fig, ax)


def identity_histogram(
    edges: np.ndarray,
    counts: np.ndarray,
    counts_high_confidence: np.ndarray,
    no_hit: int,
    no_hit_high_confidence: int,
    max_identity: float | None,
    computed: bool,
    queries: str = "all",
) -> Figure:
    """Sequence identity of each searched prediction to its nearest reference hit; `queries`: which were
    searched (config novelty.queries: all folded, or only the confident)."""
    fig, ax = _figure()
    ax.set_xlim(0, 1)
    ax.set_xlabel("sequence identity to the nearest reference hit (fraction, 0-1)")
    ax.set_ylabel("searched predictions per 0.01 bin")
    total = int(counts.sum()) + no_hit
    suffix = f" (n = {_fmt(total)})" if computed else ""
    searched = "folded predictions" if queries == "all" else "confident predictions (only they are searched)"
    ax.set_title(f"Nearest reference hit of {searched}{suffix}")
    if max_identity is not None:
        ax.axvline(max_identity, label=f"max_identity = {max_identity:g}", **THRESHOLD_STYLE)
    if not computed:
        no_data(ax, "novelty not computed\n(no reference configured: novelty.reference is empty)")
    elif total == 0:
        no_data(ax, "no data: no folded predictions with novelty results")
    else:
        if queries == "all":
            ax.stairs(counts, edges, fill=True, color="#9ecae1", label="all folded")
        ax.stairs(counts_high_confidence, edges, color="#08519c", linewidth=1.4, label="high confidence")
        ax.set_ylim(0, max(1, counts.max()) * 1.2)
        _corner_note(
            ax,
            f"no reference hit: {_fmt(no_hit)} ({_pct(no_hit, total)})\n"
            f"  of them high confidence: {_fmt(no_hit_high_confidence)}",
        )
    return _finish(fig, ax)


def structure_tm_histogram(
    edges: np.ndarray,
    counts: np.ndarray,
    searched: int,
    no_hit: int,
    novel: int,
    min_tm: float,
    computed: bool,
) -> Figure:
    """TM-score of the best verified reference structure of each confident prediction."""
    fig, ax = _figure()
    ax.set_xlim(0, 1)
    ax.set_xlabel("TM-score of the best reference structure (normalised by the prediction's length)")
    ax.set_ylabel("confident predictions per 0.01 bin")
    suffix = f" (n = {_fmt(searched)})" if computed else ""
    ax.set_title(f"Nearest reference structure of confident predictions{suffix}")
    ax.axvline(min_tm, label=f"min_tm = {min_tm:g}", **THRESHOLD_STYLE)
    if not computed:
        no_data(
            ax,
            "structural novelty not computed\n"
            "(no structure reference: structural_novelty.reference is empty)",
        )
    elif searched == 0:
        no_data(ax, "no data: no confident predictions searched against the structure reference")
    else:
        ax.axvspan(0, min_tm, color="#fdd0a2", alpha=0.35, label="novel fold (TM < min_tm)")
        ax.stairs(counts, edges, fill=True, color="#08519c", label="best verified hit")
        ax.set_ylim(0, max(1, counts.max()) * 1.2)
        _corner_note(
            ax,
            f"novel by structure: {_fmt(novel)} ({_pct(novel, searched)})\n"
            f"  of them no verified hit: {_fmt(no_hit)}",
            right=True,
        )
    return _finish(fig, ax)


def fold_throughput(chunks: Sequence[Mapping], overall: float | None) -> Figure:
    """Residues folded per second of each fold job against the chunk's mean sequence length.

    `chunks`: mappings with drop, chunk, mean_length, residues_per_second.
    """
    fig, ax = _figure()
    ax.set_xlabel("mean sequence length of the chunk (residues)")
    ax.set_ylabel("fold throughput (residues / s)")
    ax.set_title(f"Fold throughput per chunk (n = {len(chunks)} chunks)")
    if not chunks:
        no_data(ax, "no data: no predictions file records\nits fold job's timing")
        ax.set_xlim(0, 1)
    else:
        drops = list(dict.fromkeys(row["drop"] for row in chunks))
        if len(drops) > len(DROP_CYCLE):  # too many drops to tell apart by colour
            groups = {f"{len(drops)} drops": list(chunks)}
        else:
            groups = {drop: [row for row in chunks if row["drop"] == drop] for drop in drops}
        for i, (drop, rows) in enumerate(groups.items()):
            ax.scatter(
                [row["mean_length"] for row in rows],
                [row["residues_per_second"] for row in rows],
                s=28 if len(chunks) < 500 else 8,
                alpha=0.8,
                color=DROP_CYCLE[i % len(DROP_CYCLE)],
                edgecolors="none",
                label=f"{drop} ({len(rows)} chunks)",
            )
        rates = np.array([row["residues_per_second"] for row in chunks], dtype=float)
        if overall is not None:
            ax.axhline(
                overall,
                color="#555555",
                linestyle="--",
                linewidth=1.2,
                label=f"overall: {overall:,.1f} res/s",
            )
        ax.set_ylim(0, max(rates.max(), overall or 0) * 1.2)
        lengths = np.array([row["mean_length"] for row in chunks], dtype=float)
        span = max(lengths.max() - lengths.min(), 10.0)
        ax.set_xlim(max(0.0, lengths.min() - 0.1 * span), lengths.max() + 0.1 * span)
        ax.legend(fontsize=8, loc="best", framealpha=0.85)
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path) -> bytes:
    """Write `fig` as PNG to `path` (nothing clipped) and return the bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")
    data = buffer.getvalue()
    with open(path, "wb") as handle:
        handle.write(data)
    return data
