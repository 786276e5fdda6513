"""Small SQL helpers for DuckDB, shared by every module that writes SQL (split, index, counts, query).

Column types are derived from the Parquet schemas of atlas.tables, so a column's type is written once.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa


def sql_string(text: str | Path) -> str:
    """A SQL string literal (paths, names): user text is data, never SQL."""
    return "'" + str(text).replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_float(value: float) -> str:
    """A finite float as a SQL literal (thresholds)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"a threshold must be a finite number, not {value}")
    return repr(value)


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type of an Arrow type of atlas.tables."""
    if pa.types.is_list(arrow_type):
        return duckdb_type(arrow_type.value_type) + "[]"
    if pa.types.is_map(arrow_type):
        return f"MAP({duckdb_type(arrow_type.key_type)}, {duckdb_type(arrow_type.item_type)})"
    scalar = {
        pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
        pa.binary(): "BLOB",
        pa.large_binary(): "BLOB",
        pa.bool_(): "BOOLEAN",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
    }
    if arrow_type not in scalar:
        raise TypeError(f"no DuckDB type for {arrow_type}")
    return scalar[arrow_type]


def duckdb_columns(schema: pa.Schema, names: tuple[str, ...] | None = None) -> dict[str, str]:
    """{column: DuckDB type} of a schema of atlas.tables (all its columns, or `names` in that order)."""
    fields = {field.name: field.type for field in schema}
    return {name: duckdb_type(fields[name]) for name in (names or tuple(fields))}
