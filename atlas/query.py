"""User commands over a finished (or running) atlas: `atlas query` and `atlas stats` (export: atlas.export).

Every command takes `--outdir DIR` (default: `outdir` of ./config.yaml when there is one, else `results`).

`atlas query "SQL" [--format table|csv|json|parquet] [--output FILE]`
    SQL over atlas/atlas.duckdb (views manifest, predictions, novelty, atlas; table atlas_info), opened
    read-only: statements that would change it fail. An error prints DuckDB's message and exits 1. `table`
    (default) aligns every row, cutting cells at 60 characters (mmCIF text) and long floats at 7 significant
    digits; `csv` (full precision) has a header row; `json` is an array of objects (NaN as null); `parquet`
    needs --output. --output FILE is written under a temporary name and moved into place.

`atlas stats [--json]`
    Counts per drop and in total: input records, rejected (and per reason), duplicates, queued, folded,
    failed, not folded yet, high confidence, novel, high confidence and novel (what the index holds; n/a
    without a reference). They come from atlas.report.stage_counts, so summary.json shows the same numbers;
    it reads the stage Parquet files (never the structures), so it works while the workflow runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import decimal
import json
import math
import os
import sys
from pathlib import Path

DEFAULT_OUTDIR = "results"
MAX_CELL = 60


class AtlasError(Exception):
    """A user-facing error: printed without a traceback."""


# ------------------------------------------------------------------------------------------------- helpers


def load_config(path: str | Path = "config.yaml") -> dict:
    """The workflow config of the current directory (the CLI's defaults), or {} when there is none or it is
    unreadable (said on stderr)."""
    try:
        import yaml

        with open(path) as handle:
            config = yaml.safe_load(handle) or {}
        if not isinstance(config, dict):
            raise ValueError("not a mapping of config keys")
    except FileNotFoundError:
        return {}
    except Exception as error:  # unreadable, a YAML syntax error, not a mapping
        print(f"atlas: ignoring {path}: {error}", file=sys.stderr)
        return {}
    return config


def default_outdir(config: str | Path = "config.yaml") -> str:
    """`outdir` of ./config.yaml when it names one, else `results`."""
    value = load_config(config).get("outdir")
    return str(value) if isinstance(value, str) and value.strip() else DEFAULT_OUTDIR


def add_outdir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outdir",
        default=None,
        help="the workflow's outdir (default: outdir of ./config.yaml, else results)",
    )


def database_path(outdir: str | Path) -> Path:
    return Path(outdir) / "atlas" / "atlas.duckdb"


def connect(outdir: str | Path):
    """A read-only DuckDB connection to OUTDIR/atlas/atlas.duckdb whose views read OUTDIR's files.

    The views find their files through the `atlas_outdir` variable (see atlas.index), set here to this outdir,
    so a moved or copied outdir works as well.
    """
    import duckdb

    from atlas.index import ROOT_VARIABLE

    path = database_path(outdir)
    if not path.is_file():
        raise AtlasError(f"no atlas database at {path}: run the workflow first (or pass --outdir)")
    try:
        connection = duckdb.connect(str(path), read_only=True)
        connection.execute(f"SET VARIABLE {ROOT_VARIABLE} = ?", [Path(outdir).resolve().as_posix()])
    except duckdb.Error as error:
        raise AtlasError(f"cannot open {path}: {error}") from error
    return connection


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = repr(value)  # shortest round-trip form; float32 values widened to double get 7 digits
        return text if len(text) <= 10 else format(value, ".7g")
    return str(value)


def render_table(columns: list[str], rows: list[tuple], max_cell: int = MAX_CELL) -> str:
    """Plain aligned text table (numbers right-aligned), cells cut at max_cell characters."""

    def cell(value) -> str:
        text = _text(value).replace("\n", "\\n").replace("\t", " ")
        return text if len(text) <= max_cell else text[: max_cell - 1] + "…"

    cells = [[cell(value) for value in row] for row in rows]
    widths = [len(name) for name in columns]
    for row in cells:
        widths = [max(width, len(text)) for width, text in zip(widths, row, strict=True)]
    numeric = [
        bool(rows)
        and all(isinstance(row[i], (int, float, decimal.Decimal)) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]

    def line(values: list[str]) -> str:
        parts = [
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), "  ".join("-" * width for width in widths)]
    out += [line(row) for row in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out) + "\n"


class _Output:
    """stdout, or FILE written under a temporary name and moved into place when complete."""

    def __init__(self, path: str | None, binary: bool = False):
        self.path = Path(path) if path else None
        self.binary = binary

    def __enter__(self):
        if self.path is None:
            return sys.stdout.buffer if self.binary else sys.stdout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.handle = open(self.tmp, "wb" if self.binary else "w", newline="" if not self.binary else None)
        return self.handle

    def __exit__(self, kind, error, traceback):
        if self.path is None:
            (sys.stdout.buffer if self.binary else sys.stdout).flush()
            return False
        self.handle.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


# --------------------------------------------------------------------------------------------------- query


def run_query(outdir: str | Path, sql: str, fmt: str = "table", output: str | None = None) -> int:
    """Run SQL read-only and write its result; returns the number of rows written."""
    import duckdb

    if fmt == "parquet" and not output:
        raise AtlasError("--format parquet needs --output FILE")
    connection = connect(outdir)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            relation = connection.sql(sql)
            if relation is None:
                raise AtlasError("the statement returns no rows to write")
            to_table = getattr(relation, "to_arrow_table", None) or relation.fetch_arrow_table  # duckdb < 1.4
            table = to_table()
            with _Output(output, binary=True) as handle:
                pq.write_table(table, handle)
            return table.num_rows
        connection.execute(sql)
        columns = [column[0] for column in connection.description or []]
        count = 0
        with _Output(output) as handle:
            if fmt == "table":
                rows = connection.fetchall() if columns else []
                handle.write(render_table(columns, rows))
                count = len(rows)
            elif fmt == "csv":
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                while columns and (rows := connection.fetchmany(10_000)):
                    writer.writerows([[("" if v is None else v) for v in row] for row in rows])
                    count += len(rows)
            else:  # json: an array of objects
                handle.write("[")
                while columns and (rows := connection.fetchmany(10_000)):
                    for row in rows:
                        record = {name: _json_value(value) for name, value in zip(columns, row, strict=True)}
                        handle.write(
                            ("\n  " if count == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False)
                        )
                        count += 1
                handle.write("\n]\n" if count else "]\n")
        return count
    except duckdb.Error as error:
        raise AtlasError(str(error)) from error
    finally:
        connection.close()


def query_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas query", description="read-only SQL over atlas/atlas.duckdb")
    parser.add_argument(
        "sql", help='e.g. "SELECT id, mean_plddt FROM atlas ORDER BY mean_plddt DESC LIMIT 10"'
    )
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    parser.add_argument("--output", help="write to FILE instead of stdout (required for parquet)")
    add_outdir_argument(parser)
    args = parser.parse_args(argv)
    if args.format == "parquet" and not args.output:
        parser.error("--format parquet needs --output FILE")
    try:
        count = run_query(args.outdir or default_outdir(), args.sql, args.format, args.output)
    except AtlasError as error:
        print(f"atlas query: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `atlas query ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.output:
        print(f"wrote {count} rows to {args.output}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------------- stats


def stage_counts(outdir: str | Path, drops: list[str] | None = None, **thresholds) -> dict:
    """Counts per stage, per drop and in total: atlas.report.stage_counts, the one definition of them.

    (summary.json and `atlas stats` show the same numbers; see atlas.report for the keys and the defaults,
    which follow the index's atlas_info.)
    """
    import duckdb

    from atlas import report

    try:
        return report.stage_counts(outdir, drops, **thresholds)
    except duckdb.Error as error:
        raise AtlasError(str(error)) from error


def format_stats(stats: dict, outdir: str | Path) -> str:
    from atlas import report

    thresholds = stats["thresholds"]
    novelty = "novelty computed" if stats["novelty_computed"] else "novelty not computed (no reference)"
    caption = (
        f"atlas {outdir}: high confidence = status ok, mean_plddt >= {thresholds['min_plddt']:g} and "
        f"ptm >= {thresholds['min_ptm']:g}; {novelty}"
    )
    return f"{caption}\n\n{report.format_counts(stats)}"


def stats_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas stats", description="counts per stage, per drop, in total")
    add_outdir_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    args = parser.parse_args(argv)
    outdir = args.outdir or default_outdir()
    if not (Path(outdir) / "chunks").is_dir():
        print(f"atlas stats: error: nothing under {outdir}/chunks: run the workflow first (or pass --outdir)",
              file=sys.stderr)  # fmt: skip
        return 1
    try:
        stats = stage_counts(outdir)
    except AtlasError as error:
        print(f"atlas stats: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats, outdir))
    return 0
