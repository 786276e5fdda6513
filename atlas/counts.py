"""The counts per stage and drop: the one definition behind summary.json, the report and `atlas stats`.

`stage_counts(connection, drops, novelty_computed, min_plddt, min_ptm, structural_computed)` counts over a
DuckDB connection that has the views of atlas.views (`manifest`, `outcomes`): for each drop records,
rejected (and per kind of reason), duplicates, queued, folded (ok), failed, pending (queued, no prediction row
yet), high_confidence (confident), novel (folded ok and novel by sequence), high_confidence_novel (what the
index holds, before one row per sequence), high_confidence_structurally_novel (confident, and no reference
structure aligns at min_tm or more), high_confidence_novel_both (novel by sequence and by structure) and
folded_residues. The novelty counts are None when novelty was not computed, the structural ones when
structural novelty was not (no structure reference configured).

Every record is accounted for: records = folded + failed + duplicates + rejected + pending (`invariant`
says whether it holds, `format_invariant` prints it).
"""

from __future__ import annotations

from collections.abc import Sequence

from atlas.views import HIGH_CONFIDENCE_RULE

# novelty.queries "confident" searches only the high-confidence predictions: "novel" then counts only them
NOVEL_LABELS = {"all": "novel (any confidence)", "confident": "novel (only high confidence is searched)"}
# Order and labels of the per-stage counts, for the tables and `atlas stats`.
STAGES: list[tuple[str, str]] = [
    ("records", "input records"),
    ("rejected", "rejected"),
    ("duplicates", "duplicates"),
    ("queued", "queued for folding"),
    ("folded", "folded (ok)"),
    ("failed", "fold failed"),
    ("pending", "not folded yet"),
    ("high_confidence", "high confidence"),
    ("novel", NOVEL_LABELS["all"]),
    ("high_confidence_novel", "high confidence and novel"),
    ("high_confidence_structurally_novel", "high confidence, novel by structure"),
    ("high_confidence_novel_both", "high confidence, novel by sequence and structure"),
]
NOVELTY_KEYS = ("novel", "high_confidence_novel", "high_confidence_novel_both")
STRUCTURAL_KEYS = ("high_confidence_structurally_novel", "high_confidence_novel_both")

# A rejection reason is free text with details ("too long: 3359 residues > max_length 1280"); counts are per
# kind of reason, its leading lower-case words ("too long"), as the split stage's own summary groups them.
REASON_KIND_SQL = (
    "coalesce(nullif(regexp_replace(regexp_extract(reason, '^[a-z_ ]*[a-z]'), 'characters$', 'character'),"
    " ''), nullif(trim(reason), ''), 'unspecified')"
)


def _empty_counts(novelty_computed: bool, structural_computed: bool) -> dict:
    counts: dict = {key: 0 for key, _ in STAGES}
    counts["rejected_by_reason"] = {}
    counts["folded_residues"] = 0
    for key in (() if novelty_computed else NOVELTY_KEYS) + (() if structural_computed else STRUCTURAL_KEYS):
        counts[key] = None
    return counts


def invariant_holds(counts: dict) -> bool:
    """records = folded + failed + duplicates + rejected + pending."""
    parts = ("folded", "failed", "duplicates", "rejected", "pending")
    return counts["records"] == sum(counts[key] for key in parts)


def stage_counts(
    connection,
    drops: Sequence[str],
    novelty_computed: bool,
    min_plddt: float,
    min_ptm: float,
    structural_computed: bool = False,
    novelty_queries: str = "all",
) -> dict:
    """Counts per drop and in total (see the module docstring); drops in arrival order. `novelty_queries`:
    which predictions were searched for novelty (config novelty.queries: all, or confident only)."""
    if novelty_queries not in NOVEL_LABELS:
        raise ValueError(f"novelty queries {novelty_queries!r}: not one of {', '.join(NOVEL_LABELS)}")
    drops = list(drops)
    per_drop = {drop: _empty_counts(novelty_computed, structural_computed) for drop in drops}

    def row_of(drop: str) -> dict:
        if drop not in per_drop:  # a file of a drop not in the list: shown, never dropped silently
            drops.append(drop)
            per_drop[drop] = _empty_counts(novelty_computed, structural_computed)
        return per_drop[drop]

    for drop, records, queued, duplicates, rejected in connection.execute(
        """SELECT "drop", count(*), count(*) FILTER (status = 'queued'),
            count(*) FILTER (status = 'duplicate'), count(*) FILTER (status = 'rejected')
        FROM manifest GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        row_of(drop).update(records=records, queued=queued, duplicates=duplicates, rejected=rejected)
    for drop, reason, n in connection.execute(
        f"""SELECT "drop", {REASON_KIND_SQL} AS why, count(*) FROM manifest
        WHERE status = 'rejected' GROUP BY ALL ORDER BY "drop", count(*) DESC, why"""
    ).fetchall():
        row_of(drop)["rejected_by_reason"][reason] = n
    for (
        drop,
        folded,
        failed,
        pending,
        high,
        novel,
        high_novel,
        high_fold,
        both,
        residues,
    ) in connection.execute(
        """SELECT "drop", count(*) FILTER (outcome = 'ok'), count(*) FILTER (outcome = 'failed'),
            count(*) FILTER (outcome = 'pending'), count(*) FILTER (high_confidence),
            count(*) FILTER (outcome = 'ok' AND novel), count(*) FILTER (high_confidence AND novel),
            count(*) FILTER (high_confidence AND structurally_novel),
            count(*) FILTER (high_confidence AND novel AND structurally_novel),
            coalesce(sum(length) FILTER (outcome = 'ok'), 0)
        FROM outcomes GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        row = row_of(drop)
        row.update(folded=folded, failed=failed, pending=pending, high_confidence=high)
        row["folded_residues"] = int(residues)
        if novelty_computed:
            row.update(novel=novel, high_confidence_novel=high_novel)
        if structural_computed:
            row["high_confidence_structurally_novel"] = high_fold
        if novelty_computed and structural_computed:
            row["high_confidence_novel_both"] = both
    total = _empty_counts(novelty_computed, structural_computed)
    for row in per_drop.values():
        for key, value in row.items():
            if key == "rejected_by_reason":
                for reason, n in value.items():
                    total[key][reason] = total[key].get(reason, 0) + n
            elif value is not None:
                total[key] += value
    total["rejected_by_reason"] = dict(
        sorted(total["rejected_by_reason"].items(), key=lambda item: (-item[1], item[0]))
    )
    return {
        "drops": drops,
        "novelty_computed": novelty_computed,
        "novelty_queries": novelty_queries,
        "structural_computed": structural_computed,
        "thresholds": {"min_plddt": float(min_plddt), "min_ptm": float(min_ptm)},
        "high_confidence_rule": HIGH_CONFIDENCE_RULE,
        "invariant": invariant_holds(total),
        "per_drop": per_drop,
        "total": total,
    }


def stage_labels(counts: dict) -> list[tuple[str, str]]:
    """STAGES with the label of `novel` saying which predictions were searched."""
    novel = NOVEL_LABELS[counts.get("novelty_queries", "all")]
    return [(key, novel if key == "novel" else label) for key, label in STAGES]


def format_invariant(total: dict) -> str:
    """`records in = folded + failed + duplicate + rejected` with the numbers, and whether it holds."""
    parts = f"{total['folded']:,} folded + {total['failed']:,} failed + {total['duplicates']:,} duplicate"
    parts += f" + {total['rejected']:,} rejected"
    if total["pending"]:
        parts += f" + {total['pending']:,} not folded yet"
    holds = invariant_holds(total)
    return f"records in {total['records']:,} {'=' if holds else '!='} {parts}" + (
        "" if holds else "  (MISMATCH: a manifest has records of an unknown status)"
    )


def format_counts(counts: dict) -> str:
    """`stage_counts` as a plain-text table (stages x drops + total) and the invariant line."""
    drops = counts["drops"]
    header = ["stage", *drops, "total"]
    rows = []
    for key, label in stage_labels(counts):
        values = [counts["per_drop"][drop][key] for drop in drops] + [counts["total"][key]]
        rows.append([label, *("n/a" if v is None else f"{v:,}" for v in values)])
    for reason in counts["total"]["rejected_by_reason"]:
        values = [counts["per_drop"][drop]["rejected_by_reason"].get(reason, 0) for drop in drops]
        rows.append(
            [
                f"  rejected: {reason}",
                *(f"{v:,}" for v in values),
                f"{counts['total']['rejected_by_reason'][reason]:,}",
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join(lines) + "\n\n" + format_invariant(counts["total"])
