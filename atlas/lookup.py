"""Per-drop lookup files: a drop's manifest sorted by id and by checksum, in small row groups.

`atlas lookup --manifest M --by-id A --by-checksum B` writes, once per drop, its records (id, checksum, drop,
chunk, status) sorted by id (A) and by checksum (B), ROW_GROUP_ROWS rows per row group. Finding one id or
checksum then reads one row group per drop (DuckDB skips the others by their min/max statistics), never the
predictions, whatever the atlas's size; a new drop adds its own two files and leaves the others as they are.
The index's views `lookup_by_id` and `lookup_by_checksum` read them, and its table `chunk_files` names the
predictions (and novelty) file of each (drop, chunk), so a lookup reads one predictions file only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from atlas.sql import sql_string

LOOKUP_COLUMNS = ("id", "checksum", "drop", "chunk", "status")
ROW_GROUP_ROWS = 65536


def write_lookups(manifest: str | Path, by_id: str | Path, by_checksum: str | Path) -> int:
    """Write both sorted copies of a manifest's lookup columns (temporary name, then rename); returns rows."""
    import duckdb

    columns = ", ".join(f'"{name}"' for name in LOOKUP_COLUMNS)
    with duckdb.connect(":memory:") as connection:
        if limit := os.environ.get("ATLAS_LOOKUP_MEMORY_LIMIT"):
            connection.execute("SET memory_limit = ?", [limit])
        source = f"read_parquet({sql_string(manifest)})"
        for target, key in ((Path(by_id), "id"), (Path(by_checksum), "checksum")):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
            try:
                connection.execute(
                    f"COPY (SELECT {columns} FROM {source} ORDER BY {key}, id) TO {sql_string(tmp)}"
                    f" (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
                )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
        return connection.execute(f"SELECT count(*) FROM {source}").fetchone()[0]


def lookup_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas lookup", description="a drop's manifest sorted by id, checksum"
    )
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--by-id", required=True)
    parser.add_argument("--by-checksum", required=True)
    args = parser.parse_args(argv)
    import duckdb

    try:
        rows = write_lookups(args.manifest, args.by_id, args.by_checksum)
    except (OSError, duckdb.Error) as error:
        print(f"atlas lookup: error: {error}", file=sys.stderr)
        return 1
    print(f"[atlas] {rows} records of {args.manifest} sorted by id and by checksum", file=sys.stderr)
    return 0
