"""The data of the report's plots, binned in DuckDB over the views of atlas.views (never one point per
prediction, so the report's memory does not grow with the atlas). Each function takes a connection."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from atlas.sql import quote_identifier


def _hist_from_rows(rows: Iterable[tuple], nbins: int) -> np.ndarray:
    counts = np.zeros(nbins, dtype=np.int64)
    for position, n in rows:
        if position is not None:
            counts[int(position)] += n
    return counts


def plddt_histogram_data(connection, drops: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    """1-pLDDT bins of the folded predictions' mean pLDDT: edges, total counts, counts per drop."""
    edges = np.arange(0, 101, 1.0)
    per_drop = {drop: np.zeros(100, dtype=np.int64) for drop in drops}
    for drop, position, n in connection.execute(
        """SELECT "drop", least(greatest(floor(mean_plddt), 0), 99)::INTEGER, count(*) FROM outcomes
        WHERE outcome = 'ok' AND isfinite(mean_plddt) GROUP BY ALL"""
    ).fetchall():
        per_drop.setdefault(drop, np.zeros(100, dtype=np.int64))[position] += n
    total = np.sum(list(per_drop.values()), axis=0) if per_drop else np.zeros(100, dtype=np.int64)
    return edges, total, per_drop


def density_data(connection, bins: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine 2-D bins of (mean pLDDT, pTM): bin centres and counts, for a weighted hexbin."""
    rows = connection.execute(
        f"""SELECT least(greatest(floor(mean_plddt / 100 * {bins}), 0), {bins - 1})::INTEGER AS bx,
            least(greatest(floor(ptm * {bins}), 0), {bins - 1})::INTEGER AS by, count(*)
        FROM outcomes WHERE outcome = 'ok' AND isfinite(mean_plddt) AND isfinite(ptm) GROUP BY ALL"""
    ).fetchall()
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    array = np.array(rows, dtype=float)
    return (array[:, 0] + 0.5) * 100 / bins, (array[:, 1] + 0.5) / bins, array[:, 2]


def length_data(connection, nbins: int = 60) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Log-spaced length bins of the records by manifest status and of the fold outcomes."""
    lo, hi = connection.execute("SELECT min(length), max(length) FROM manifest").fetchone()
    lo = max(1, int(lo or 1))
    hi = max(int(hi or 1), lo) + 1
    if hi / lo < 4:  # a narrow range still gets a readable axis
        lo, hi = max(1, lo // 2), hi * 2
    edges = np.geomspace(lo, hi, nbins + 1)
    step = math.log(hi / lo) / nbins
    position = f"floor((ln(greatest(length, 1)) - {math.log(lo)!r}) / {step!r})"
    bin_sql = f"least(greatest({position}, 0), {nbins - 1})::INTEGER"
    series: dict[str, np.ndarray] = {}
    for status in ("queued", "duplicate", "rejected"):
        series[status] = _hist_from_rows(
            connection.execute(
                f"SELECT {bin_sql}, count(*) FROM manifest WHERE status = ? AND length IS NOT NULL"
                " GROUP BY ALL",
                [status],
            ).fetchall(),
            nbins,
        )
    for outcome, label in (("ok", "folded (ok)"), ("failed", "folded (failed)")):
        series[label] = _hist_from_rows(
            connection.execute(
                f"SELECT {bin_sql}, count(*) FROM outcomes WHERE outcome = ? AND length IS NOT NULL"
                " GROUP BY ALL",
                [outcome],
            ).fetchall(),
            nbins,
        )
    return edges, series


def identity_data(connection, novelty_computed: bool) -> dict:
    """Identity to the best reference hit of the folded predictions (all, high confidence), no-hit counts."""
    edges = np.linspace(0, 1, 101)
    empty = np.zeros(100, dtype=np.int64)
    result = {
        "edges": edges,
        "counts": empty,
        "counts_high_confidence": empty.copy(),
        "no_hit": 0,
        "no_hit_hc": 0,
    }
    if not novelty_computed:
        return result
    (top,) = connection.execute(
        "SELECT max(identity) FROM outcomes WHERE outcome = 'ok' AND searched"
    ).fetchone()
    scale = 100.0 if top is not None and top > 1.0 else 1.0  # identity given in percent
    counts, counts_hc = empty.copy(), empty.copy()
    for position, n, n_hc in connection.execute(
        f"""SELECT least(greatest(floor(identity / {scale!r} * 100), 0), 99)::INTEGER, count(*),
            count(*) FILTER (high_confidence)
        FROM outcomes WHERE outcome = 'ok' AND searched AND isfinite(identity) GROUP BY ALL"""
    ).fetchall():
        counts[position] += n
        counts_hc[position] += n_hc
    no_hit, no_hit_hc = connection.execute(
        """SELECT count(*), count(*) FILTER (high_confidence) FROM outcomes
        WHERE outcome = 'ok' AND searched AND (identity IS NULL OR best_hit IS NULL OR best_hit = '')"""
    ).fetchone()
    result.update(counts=counts, counts_high_confidence=counts_hc, no_hit=no_hit, no_hit_hc=no_hit_hc)
    return result


def structure_tm_data(connection, structural_computed: bool) -> dict:
    """TM-score of the best structural hit of the confident predictions searched (structural_best), in 0.01
    bins; how many had no verified hit, and how many are structurally novel."""
    edges = np.linspace(0, 1, 101)
    result = {"edges": edges, "counts": np.zeros(100, dtype=np.int64), "searched": 0, "no_hit": 0, "novel": 0}
    if not structural_computed:
        return result
    result["counts"] = _hist_from_rows(
        connection.execute(
            """SELECT least(greatest(floor(structure_tm * 100), 0), 99)::INTEGER, count(*) FROM outcomes
            WHERE high_confidence AND structurally_searched AND isfinite(structure_tm) GROUP BY ALL"""
        ).fetchall(),
        100,
    )
    searched, no_hit, novel = connection.execute(
        """SELECT count(*), count(*) FILTER (structure_tm IS NULL), count(*) FILTER (structurally_novel)
        FROM outcomes WHERE high_confidence AND structurally_searched"""
    ).fetchone()
    result.update(searched=searched, no_hit=no_hit, novel=novel)
    return result


def models_used(connection) -> list[dict]:
    return [
        {"model": model, "num_recycles": recycles, "predictions": n}
        for model, recycles, n in connection.execute(
            """SELECT model, num_recycles, count(*) FROM outcomes WHERE outcome <> 'pending'
            GROUP BY ALL ORDER BY count(*) DESC, model"""
        ).fetchall()
    ]


TOP_COLUMNS = (
    "id",
    "length",
    "mean_plddt",
    "ptm",
    "best_hit",
    "identity",
    "structure_hit",
    "structure_tm",
    "drop",
)


def top_predictions(connection, novelty_computed: bool, limit: int = 50) -> list[dict]:
    """The most confident high-confidence (and novel) predictions, one per sequence, best first (mean pLDDT x
    pTM, then id)."""
    novel = "AND novel IS TRUE" if novelty_computed else ""
    rows = connection.execute(
        f"""SELECT {", ".join(quote_identifier(name) for name in TOP_COLUMNS)} FROM outcomes
        WHERE high_confidence {novel}
        QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY "drop", chunk, id) = 1
        ORDER BY mean_plddt * ptm DESC, id LIMIT {int(limit)}"""
    ).fetchall()
    return [dict(zip(TOP_COLUMNS, row, strict=True)) for row in rows]


def failed_predictions(connection, limit: int = 50) -> tuple[int, list[dict]]:
    """How many predictions failed, and the first `limit` of them (drop, chunk, id) with their error."""
    (total,) = connection.execute("SELECT count(*) FROM outcomes WHERE outcome = 'failed'").fetchone()
    rows = connection.execute(
        f"""SELECT "drop", chunk, id, error FROM outcomes WHERE outcome = 'failed'
        ORDER BY "drop", chunk, id LIMIT {int(limit)}"""
    ).fetchall()
    return total, [dict(zip(("drop", "chunk", "id", "error"), row, strict=True)) for row in rows]
