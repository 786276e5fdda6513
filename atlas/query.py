"""`atlas query` over a finished (or running) atlas (export: atlas.export, stats: atlas.stats).

Every command takes `--outdir DIR` (default: `outdir` of ./config.yaml, else the config schema's default).

`atlas query "SQL" [--format table|csv|json|parquet] [--output FILE] [--max-cell N]`
    One reading statement (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) over atlas/atlas.duckdb
    (views manifest, predictions, novelty, outcomes, atlas; table atlas_info). Read-only in fact: any other
    statement (COPY, EXPORT, ATTACH, INSTALL/LOAD, SET, PRAGMA, CALL, CREATE, ...) is refused before it runs,
    the database is opened read-only, and files are readable only under the outdir (DuckDB's
    enable_external_access = false with allowed_directories = [outdir], then lock_configuration), so
    `read_csv('/etc/passwd')` or a URL is refused too. A refusal or an error prints the reason and exits 1.
    Floats stored as float32 print in their shortest float32 form (0.5542629, not 0.5542628765106201), in
    every format. `table` (default) aligns every row and cuts cells longer than --max-cell characters (60;
    0: never), saying so under the table; `csv` has a header row; `json` is an array of objects (NaN as
    null); `parquet` needs --output. --output FILE is written under a temporary name and moved into place.

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

from atlas.config import default_outdir
from atlas.index import ATLAS_DIR, DATABASE_FILE, ROOT_VARIABLE
from atlas.sql import sql_string

MAX_CELL = 60
ATTACHED_DATABASE = "atlas_database"  # the name connect() attaches atlas.duckdb under
# statement types that only read (DuckDB parses DESCRIBE, SHOW, SUMMARIZE and FROM-first as SELECT)
READING_STATEMENTS = ("SELECT", "EXPLAIN")


class AtlasError(Exception):
    """A user-facing error: printed without a traceback."""


# ------------------------------------------------------------------------------------------------- helpers


def add_outdir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outdir",
        default=None,
        help="the workflow's outdir (default: outdir of ./config.yaml, else the config schema's default)",
    )


def resolve_outdir(outdir: str | None) -> str:
    chosen = outdir or default_outdir()
    if not chosen:
        raise AtlasError("no --outdir given and no config.yaml naming one")
    return chosen


def database_path(outdir: str | Path) -> Path:
    return Path(outdir) / ATLAS_DIR / DATABASE_FILE


def connect(outdir: str | Path):
    """A DuckDB connection to OUTDIR/atlas/atlas.duckdb that can only read, and only files under OUTDIR.

    Read-only database (attached to a new in-memory instance); external access off except the outdir
    (`allowed_directories`), no extension
    auto-loading, and the configuration locked. The views find their files through the `atlas_outdir`
    variable (see atlas.index), set here to this outdir, so a moved or copied outdir works as well.
    """
    import duckdb

    path = database_path(outdir)
    if not path.is_file():
        raise AtlasError(f"no atlas database at {path}: run the workflow first (or pass --outdir)")
    root = Path(outdir).resolve().as_posix()
    try:
        # A fresh in-memory instance with the atlas attached: DuckDB caches one instance per database file
        # in a process, and a cached instance's locked configuration could not be set again. A cursor of this
        # connection must `USE` ATTACHED_DATABASE too.
        connection = duckdb.connect(
            ":memory:",
            config={"autoinstall_known_extensions": False, "autoload_known_extensions": False},
        )
        connection.execute(f"ATTACH {sql_string(path)} AS {ATTACHED_DATABASE} (READ_ONLY)")
        connection.execute(f"USE {ATTACHED_DATABASE}")
        connection.execute(f"SET VARIABLE {ROOT_VARIABLE} = ?", [root])
        connection.execute("SET allowed_directories = ?", [[root + "/"]])
        connection.execute("SET enable_external_access = false")
        connection.execute("SET lock_configuration = true")
    except duckdb.Error as error:
        raise AtlasError(f"cannot open {path}: {error}") from error
    return connection


# atlas_info columns a database of an earlier version lacks, and what that version did
ATLAS_INFO_DEFAULTS = {"structural_computed": False, "novelty_queries": "all"}


def atlas_info(connection) -> dict:
    """The atlas_info row (thresholds, drops, what was computed) as a dict, an older database's missing
    columns filled with what its version did."""
    cursor = connection.execute("SELECT * FROM atlas_info")
    info = dict(zip([column[0] for column in cursor.description], cursor.fetchone(), strict=True))
    for key, value in ATLAS_INFO_DEFAULTS.items():
        if info.get(key) is None:
            info[key] = value
    return info


def check_reading_statement(connection, sql: str) -> None:
    """Refuse, before running anything, SQL that is not exactly one reading statement."""
    import duckdb

    try:
        statements = connection.extract_statements(sql)
    except duckdb.Error as error:
        raise AtlasError(str(error)) from error
    if len(statements) != 1:
        raise AtlasError(
            f"refused: {len(statements)} statements; atlas query runs one SQL statement at a time"
        )
    kind = statements[0].type.name
    if kind not in READING_STATEMENTS:
        raise AtlasError(
            f"refused: {kind} statement. atlas query is read-only: it runs one reading statement"
            " (SELECT, WITH, FROM, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
        )


def _duckdb_error(error: Exception, outdir: str | Path) -> AtlasError:
    import duckdb

    if isinstance(error, duckdb.PermissionException):
        return AtlasError(
            f"refused: {error}. atlas query reads only the files of the atlas under {Path(outdir).resolve()}"
        )
    return AtlasError(str(error))


def short_float(value: float) -> float:
    """A float32 value widened to double, as the shortest float that prints it (0.5542629); doubles that are
    no float32 value are returned as they are."""
    if not math.isfinite(value):
        return value
    import numpy as np

    narrow = np.float32(value)
    return float(str(narrow)) if float(narrow) == value else value


def _json_value(value):
    if isinstance(value, float):
        return short_float(value) if math.isfinite(value) else None
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
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(short_float(value)) if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_text(item) for item in value) + "]"
    return str(value)


def render_table(columns: list[str], rows: list[tuple], max_cell: int = MAX_CELL) -> str:
    """Plain aligned text table (numbers right-aligned); cells longer than max_cell (0: no limit) are cut
    with `…` and a line under the table says so."""
    cut = 0

    def cell(value) -> str:
        nonlocal cut
        text = _text(value).replace("\n", "\\n").replace("\t", " ")
        if max_cell and len(text) > max_cell:
            cut += 1
            return text[: max_cell - 1] + "…"
        return text

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
    if cut:
        out.append(
            f"({cut} cell{'s' if cut != 1 else ''} cut at {max_cell} characters, marked …:"
            " --max-cell 0 shows them whole; --format csv or json never cuts)"
        )
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


def _csv_value(value):
    if value is None:
        return ""
    return short_float(value) if isinstance(value, float) else value


def run_query(
    outdir: str | Path, sql: str, fmt: str = "table", output: str | None = None, max_cell: int = MAX_CELL
) -> int:
    """Run one reading statement and write its result; returns the number of rows written."""
    import duckdb

    if fmt == "parquet" and not output:
        raise AtlasError("--format parquet needs --output FILE")
    connection = connect(outdir)
    try:
        check_reading_statement(connection, sql)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = connection.sql(sql).to_arrow_table()
            with _Output(output, binary=True) as handle:
                pq.write_table(table, handle)
            return table.num_rows
        connection.execute(sql)
        columns = [column[0] for column in connection.description or []]
        count = 0
        with _Output(output) as handle:
            if fmt == "table":
                rows = connection.fetchall() if columns else []
                handle.write(render_table(columns, rows, max_cell))
                count = len(rows)
            elif fmt == "csv":
                writer = csv.writer(handle, lineterminator="\n")
                writer.writerow(columns)
                while columns and (rows := connection.fetchmany(10_000)):
                    writer.writerows([[_csv_value(v) for v in row] for row in rows])
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
        raise _duckdb_error(error, outdir) from error
    finally:
        connection.close()


def query_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas query", description="one read-only SQL statement over atlas/atlas.duckdb"
    )
    parser.add_argument(
        "sql", help='e.g. "SELECT id, mean_plddt FROM atlas ORDER BY mean_plddt DESC LIMIT 10"'
    )
    parser.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    parser.add_argument("--output", help="write to FILE instead of stdout (required for parquet)")
    parser.add_argument(
        "--max-cell",
        type=int,
        default=MAX_CELL,
        help="table format: cut longer cells, saying so (0: never cut; default %(default)s)",
    )
    add_outdir_argument(parser)
    args = parser.parse_args(argv)
    if args.format == "parquet" and not args.output:
        parser.error("--format parquet needs --output FILE")
    try:
        count = run_query(resolve_outdir(args.outdir), args.sql, args.format, args.output, args.max_cell)
    except AtlasError as error:
        print(f"atlas query: error: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `atlas query ... | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.output:
        print(f"wrote {count} rows to {args.output}", file=sys.stderr)
    return 0
