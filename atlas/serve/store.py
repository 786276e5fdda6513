"""What the explorer reads: searches over the atlas index and one prediction by id, with DuckDB, read-only.

Every value from a request reaches SQL as a bound parameter; column names come from fixed lists (or the views'
own columns), never from a request. Invalid input raises BadRequest (a 400 with its message); an unknown id
raises NotFound (404).

Scale. A results page reads a copy of atlas/index.parquet only (count + top-N), so its time follows the index,
not the predictions. The copy is a DuckDB table (LISTING_TABLE) in a file under the cache folder, made when
the server first sees an index file and again after the index job replaces it (about 2 s of CPU per million
rows): DuckDB's own storage fetches the page's rows after the top-N without decoding the Parquet row groups'
strings in full (3 x less CPU per page than over the Parquet file; bench/serve_page.py), and its memory stays
bounded (LISTING_MEMORY) whatever the index size. One structure is read from its own chunk's Parquet file (the
index or the drop's manifest names the drop and chunk), not by scanning every prediction. The one search that
scans the predictions is the sequence fragment (`q` of at least MIN_FRAGMENT letters): there is no index of
sequences to use instead.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from atlas.index import ROOT_VARIABLE
from atlas.query import ATTACHED_DATABASE, AtlasError, connect, database_path
from atlas.sql import quote_identifier, sql_string

MAX_PER_PAGE = 200
DEFAULT_PER_PAGE = 50
MAX_PAGE = 10_000_000
MAX_QUERY = 1000
MIN_FRAGMENT = 5
MAX_FRAGMENT_MATCHES = 100_000  # checksums a sequence fragment may match
LISTING_TABLE = "listing"
LISTING_MEMORY = "1GB"
# Columns of a results row, in display order; those the index lacks are left out.
RESULT_COLUMNS = (
    "id", "drop", "length", "mean_plddt", "ptm", "num_conf", "max_pae", "best_hit", "identity",
    "query_coverage", "novel", "structure_hit", "structure_tm", "structurally_novel", "description",
    "is_fragment",
)  # fmt: skip
SORTABLE = (
    "id", "drop", "length", "mean_plddt", "ptm", "num_conf", "max_pae", "identity", "query_coverage",
    "evalue", "structure_tm",
)  # fmt: skip
RANGES = {  # filter parameter -> (column, comparison, bounds)
    "min_plddt": ("mean_plddt", ">=", (0.0, 100.0)),
    "max_plddt": ("mean_plddt", "<=", (0.0, 100.0)),
    "min_ptm": ("ptm", ">=", (0.0, 1.0)),
    "max_ptm": ("ptm", "<=", (0.0, 1.0)),
    "min_length": ("length", ">=", (0, 1_000_000)),
    "max_length": ("length", "<=", (0, 1_000_000)),
    "max_identity": ("identity", "<=", (0.0, 1.0)),
    "max_tm": ("structure_tm", "<=", (0.0, 1.0)),
}
BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
FLAGS = ("novel", "structurally_novel", "fragment")  # true/false filters; fragment: the is_fragment column
SEARCH_PARAMETERS = {"q", *RANGES, *FLAGS, "drop", "header", "sort", "order", "page", "per_page"}
HEADER_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class BadRequest(ValueError):
    """A request the explorer cannot answer as asked (a 400 with this message)."""


class NotFound(LookupError):
    """No such structure or page (a 404 with this message)."""


@dataclass
class Search:
    q: str = ""
    ranges: dict[str, float] = field(default_factory=dict)
    novel: bool | None = None
    structurally_novel: bool | None = None
    fragment: bool | None = None
    drop: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    sort: str = "mean_plddt"
    order: str = "desc"
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def query_items(self, **changes) -> list[tuple[str, str]]:
        """The search as URL query items (the defaults left out), with some values changed."""
        values = {
            "q": self.q or None,
            **{name: _number_text(value) for name, value in self.ranges.items()},
            **{
                name: None if getattr(self, name) is None else str(getattr(self, name)).lower()
                for name in FLAGS
            },
            "drop": self.drop,
            "sort": None if self.sort == "mean_plddt" else self.sort,
            "order": None if self.order == "desc" else self.order,
            "page": None if self.page == 1 else str(self.page),
            "per_page": None if self.per_page == DEFAULT_PER_PAGE else str(self.per_page),
        }
        values.update(changes)
        items = [(name, str(value)) for name, value in values.items() if value not in (None, "")]
        items += [("header", f"{key}={value}") for key, value in self.headers]
        return items


def _number_text(value: float) -> str:
    return f"{value:g}"


def _number(name: str, text: str, bounds: tuple) -> float:
    low, high = bounds
    try:
        value = int(text) if isinstance(low, int) else float(text)
    except ValueError:
        kind = "an integer" if isinstance(low, int) else "a number"
        raise BadRequest(f"{name} must be {kind}, not {text[:40]!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise BadRequest(f"{name} must lie between {low} and {high}, not {text[:40]!r}")
    return value


def _boolean(name: str, text: str) -> bool | None:
    if text in ("", "any"):
        return None
    if text.lower() not in BOOLEANS:
        raise BadRequest(f"{name} must be true or false, not {text[:40]!r}")
    return BOOLEANS[text.lower()]


def parse_search(items: list[tuple[str, str]]) -> Search:
    """A Search from URL query items; anything unknown, malformed or out of bounds is a BadRequest."""
    search = Search()
    seen: set[str] = set()
    for name, text in items:
        if name not in SEARCH_PARAMETERS:
            raise BadRequest(
                f"unknown parameter {name[:40]!r}; known: {', '.join(sorted(SEARCH_PARAMETERS))}"
            )
        if name != "header" and name in seen:
            raise BadRequest(f"parameter {name!r} given twice")
        seen.add(name)
        if name == "q":
            if len(text) > MAX_QUERY:
                raise BadRequest(f"q is longer than {MAX_QUERY} characters")
            search.q = text.strip()
        elif name in RANGES:
            if text.strip():
                search.ranges[name] = _number(name, text.strip(), RANGES[name][2])
        elif name in FLAGS:
            setattr(search, name, _boolean(name, text.strip()))
        elif name == "drop":
            search.drop = text or None
        elif name == "header":
            key, sep, value = text.partition("=")
            if not sep or not HEADER_KEY.match(key) or len(value) > 200:
                raise BadRequest(f"header must be KEY=VALUE (KEY of letters, digits, _.-), not {text[:40]!r}")
            search.headers.append((key, value))
        elif name == "sort":
            if text not in SORTABLE:
                raise BadRequest(f"cannot sort by {text[:40]!r}; sortable: {', '.join(SORTABLE)}")
            search.sort = text
        elif name == "order":
            if text not in ("asc", "desc"):
                raise BadRequest(f"order must be asc or desc, not {text[:40]!r}")
            search.order = text
        elif name == "page":
            search.page = int(_number("page", text, (1, MAX_PAGE)))
        elif name == "per_page":
            search.per_page = int(_number("per_page", text, (1, MAX_PER_PAGE)))
    return search


class Atlas:
    """A read-only view of one outdir's atlas; reopened when the index job replaces atlas.duckdb."""

    def __init__(self, outdir: str | Path, cache_dir: str | Path | None = None):
        self.outdir = Path(outdir).resolve()
        default_cache = Path(tempfile.gettempdir()) / f"atlas-serve-{os.getuid()}"
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache
        self._listing = None
        self._listing_stamp = None
        self.database = database_path(self.outdir)
        self.index_path = self.outdir / "atlas" / "index.parquet"
        self._lock = threading.Lock()
        self._connection = None
        self._stamp = None
        self.columns: dict[str, list[str]] = {}
        self.has_structural = False
        self.drops: list[str] = []
        self._drop_summary = None
        self.cursor()  # fail at start, not at the first request, when there is no atlas

    def cursor(self):
        """A cursor of its own for one request (DuckDB cursors are not shared across threads)."""
        try:
            stat = self.database.stat()
        except FileNotFoundError:
            raise AtlasError(
                f"no atlas database at {self.database}: run the workflow first (or pass --outdir)"
            ) from None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._stamp:
                connection = connect(self.outdir)
                views = {
                    row[0] for row in connection.execute("SELECT view_name FROM duckdb_views()").fetchall()
                }
                self.columns = {
                    view: [row[0] for row in connection.execute(f"DESCRIBE {view}").fetchall()]
                    for view in ("atlas", "predictions", "manifest", "novelty")
                }
                # only whether it exists (a database of an earlier version has none): describing a view
                # binds it, which reads the footer of every file it globs
                self.has_structural = "structural" in views
                self.drops = list(connection.execute("SELECT drops FROM atlas_info").fetchone()[0])
                self._connection, self._stamp, self._drop_summary = connection, stamp, None
            connection = self._connection
        cursor = connection.cursor()
        cursor.execute(f"USE {ATTACHED_DATABASE}")
        cursor.execute(f"SET VARIABLE {ROOT_VARIABLE} = ?", [self.outdir.as_posix()])
        return cursor

    def listing(self):
        """A cursor on the DuckDB copy of index.parquet (see the module docstring), made when missing."""
        stat = self.index_path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if stamp != self._listing_stamp:
                self._listing = self._open_listing(stamp)
                self._listing_stamp = stamp
            return self._listing.cursor()

    def _open_listing(self, stamp: tuple):
        import duckdb

        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        owner = hashlib.sha256(self.outdir.as_posix().encode()).hexdigest()[:16]
        path = self.cache_dir / f"{owner}-{'-'.join(map(str, stamp))}.duckdb"
        if not path.is_file():
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            try:
                with duckdb.connect(str(tmp)) as connection:
                    connection.execute(
                        f"CREATE TABLE {LISTING_TABLE} AS SELECT * FROM "
                        f"read_parquet({sql_string(self.index_path.as_posix())}, file_row_number = true)"
                    )
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            for stale in self.cache_dir.glob(f"{owner}-*.duckdb"):  # copies of earlier index files
                if stale != path:
                    stale.unlink(missing_ok=True)
        return duckdb.connect(str(path), read_only=True, config={"memory_limit": LISTING_MEMORY})

    # ---- search ----
    def _where(self, search: Search) -> tuple[str, list]:
        atlas_columns = set(self.columns["atlas"])
        clauses, values = [], []
        if search.q:
            text = search.q
            alternatives = ["starts_with(id, ?)", "checksum = ?"]
            values += [text, text.lower()]
            if "crc64" in atlas_columns:
                alternatives.append("upper(crc64) IN (?, ?)")
                values += [text.upper().removeprefix("CRC-"), text.upper()]
            if len(text) >= MIN_FRAGMENT and text.isascii() and text.isalpha():
                matches = self.cursor().execute(
                    "SELECT DISTINCT checksum FROM predictions WHERE status = 'ok' AND contains(sequence, ?) "
                    "LIMIT ?",
                    [text.upper(), MAX_FRAGMENT_MATCHES],
                )
                alternatives.append("list_contains(?, checksum)")
                values.append([row[0] for row in matches.fetchall()])
            clauses.append("(" + " OR ".join(alternatives) + ")")
        for name, value in search.ranges.items():
            column, comparison, _ = RANGES[name]
            clauses.append(f"{column} {comparison} ?")
            values.append(value)
        if search.novel is not None:
            clauses.append("novel IS NOT DISTINCT FROM ?")
            values.append(search.novel)
        if search.structurally_novel is not None:
            if "structurally_novel" not in atlas_columns:
                raise BadRequest("this atlas has no structural novelty (its index predates it)")
            clauses.append("structurally_novel IS NOT DISTINCT FROM ?")
            values.append(search.structurally_novel)
        if search.fragment is not None:
            if "is_fragment" not in atlas_columns:
                raise BadRequest("this atlas has no is_fragment column (its manifests carry no header data)")
            clauses.append("is_fragment IS NOT DISTINCT FROM ?")
            values.append(search.fragment)
        if search.drop is not None:
            if search.drop not in self.drops:
                raise BadRequest(f"unknown drop {search.drop[:60]!r}; drops: {', '.join(self.drops)}")
            clauses.append('"drop" = ?')
            values.append(search.drop)
        if search.headers and "header_fields" not in atlas_columns:
            raise BadRequest("this atlas has no header fields (its index carries no header_fields column)")
        for key, value in search.headers:
            clauses.append("header_fields[?] = ?")
            values += [key, value]
        return (" AND ".join(clauses) or "true"), values

    def search(self, search: Search) -> dict:
        """One page of atlas rows: {rows, columns, total, pages, search}.

        Rows come from the copy of index.parquet with the file's row number as the last sort key: ties cost
        an integer compare instead of reading two string columns in full, and keep the index's order.
        """
        where, values = self._where(search)
        cursor = self.listing()
        total = cursor.execute(f"SELECT count(*) FROM {LISTING_TABLE} WHERE {where}", values).fetchone()[0]
        pages = max(1, math.ceil(total / search.per_page))
        if search.page > pages:
            raise NotFound(f"page {search.page} is past the last page ({pages}) of {total} results")
        columns = [name for name in RESULT_COLUMNS if name in self.columns["atlas"]]
        listed = ", ".join(quote_identifier(name) for name in columns)
        direction = "ASC" if search.order == "asc" else "DESC"
        cursor.execute(
            f"SELECT {listed} FROM {LISTING_TABLE} WHERE {where} "
            f"ORDER BY {quote_identifier(search.sort)} {direction} NULLS LAST, file_row_number "
            "LIMIT ? OFFSET ?",
            [*values, search.per_page, (search.page - 1) * search.per_page],
        )
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        return {"rows": rows, "columns": columns, "total": total, "pages": pages, "search": search}

    # ---- drops ----
    def drop_summary(self) -> list[dict]:
        """Per drop, in arrival order: records, queued, duplicates, rejected, what it added to the atlas."""
        cursor = self.cursor()
        with self._lock:
            if self._drop_summary is not None:
                return self._drop_summary
        added = dict(cursor.execute('SELECT "drop", count(*) FROM atlas GROUP BY ALL').fetchall())
        counts: dict[str, dict[str, int]] = {}
        for drop, status, count in cursor.execute(
            'SELECT "drop", status, count(*) FROM manifest GROUP BY ALL'
        ).fetchall():
            counts.setdefault(drop, {})[status] = count
        summary = [
            {
                "drop": drop,
                "records": sum(counts.get(drop, {}).values()),
                "queued": counts.get(drop, {}).get("queued", 0),
                "duplicate": counts.get(drop, {}).get("duplicate", 0),
                "rejected": counts.get(drop, {}).get("rejected", 0),
                "added_to_atlas": added.get(drop, 0),
            }
            for drop in self.drops
        ]
        with self._lock:
            self._drop_summary = summary
        return summary

    # ---- one structure ----
    def _stage_file(self, folder: str, drop: str, chunk: str) -> Path | None:
        """outdir/folder/drop/chunk.parquet when it exists and lies inside outdir/folder (names are data)."""
        base = (self.outdir / folder).resolve()
        path = (base / drop / f"{chunk}.parquet").resolve()
        return path if base in path.parents and path.is_file() else None

    def _rows(self, cursor, view: str, path: Path | None, where: str, values: list) -> list[dict]:
        source = "read_parquet(?)" if path else view
        arguments = [path.as_posix(), *values] if path else values
        cursor.execute(f"SELECT * FROM {source} WHERE {where}", arguments)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def locate(self, identifier: str, drop: str | None = None) -> dict:
        """The drop, chunk and index row (or None) of a folded id; NotFound with the reason otherwise."""
        if len(identifier) > MAX_QUERY:
            raise BadRequest(f"an id is at most {MAX_QUERY} characters")
        if drop is not None and drop not in self.drops:
            raise BadRequest(f"unknown drop {drop[:60]!r}; drops: {', '.join(self.drops)}")
        cursor = self.cursor()
        drop_clause, drop_values = ('AND "drop" = ?', [drop]) if drop else ("", [])
        cursor.execute(
            f'SELECT * FROM atlas WHERE id = ? {drop_clause} ORDER BY "drop"', [identifier, *drop_values]
        )
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        if rows:
            return {"drop": rows[0]["drop"], "chunk": rows[0]["chunk"], "id": identifier, "atlas": rows[0]}
        cursor.execute(
            f'SELECT "drop", status, reason, chunk, checksum FROM manifest WHERE id = ? {drop_clause}',
            [identifier, *drop_values],
        )
        records = cursor.fetchall()
        queued = [record for record in records if record[1] == "queued"]
        if queued:
            return {"drop": queued[0][0], "chunk": queued[0][3], "id": identifier, "atlas": None}
        duplicates = [record for record in records if record[1] == "duplicate"]
        if duplicates:  # its sequence was folded under another id: show that prediction
            owner = cursor.execute(
                "SELECT \"drop\", chunk, id FROM manifest WHERE checksum = ? AND status = 'queued' "
                'ORDER BY "drop" LIMIT 1',
                [duplicates[0][4]],
            ).fetchone()
            if owner:
                return {
                    "drop": owner[0],
                    "chunk": owner[1],
                    "id": owner[2],
                    "atlas": None,
                    "alias": identifier,
                }
        if records:
            raise NotFound(f"{identifier!r} was not folded: {records[0][1]} ({records[0][2]})")
        raise NotFound(f"no record with id {identifier!r} in this atlas")

    def structure(self, identifier: str, drop: str | None = None) -> dict:
        """Everything the structure page shows: the prediction row, novelty, structural novelty (the
        confident row of its chunk's structural file; None when not searched), header metadata, index row."""
        place = self.locate(identifier, drop)
        cursor = self.cursor()
        key = 'id = ? AND "drop" = ? AND chunk = ?'
        key_values = [place["id"], place["drop"], place["chunk"]]
        predictions = self._rows(
            cursor,
            "predictions",
            self._stage_file("predictions", place["drop"], place["chunk"]),
            key,
            key_values,
        )
        if not predictions:
            raise NotFound(f"{place['id']!r} is queued in drop {place['drop']!r} but not folded yet")
        prediction = predictions[0]
        novelty = self._rows(
            cursor,
            "novelty",
            self._stage_file("novelty", place["drop"], place["chunk"]),
            "checksum = ?",
            [prediction["checksum"]],
        )
        structural = []
        if self.has_structural:
            structural = self._rows(
                cursor,
                "structural",
                self._stage_file("structural", place["drop"], place["chunk"]),
                "checksum = ? AND confident",
                [prediction["checksum"]],
            )
        manifest_path = (self.outdir / "chunks" / place["drop"] / "manifest.parquet").resolve()
        inside = (self.outdir / "chunks").resolve() in manifest_path.parents and manifest_path.is_file()
        header = self._rows(
            cursor,
            "manifest",
            manifest_path if inside else None,
            "id = ? AND \"drop\" = ? AND status = 'queued'",
            [place["id"], place["drop"]],
        )
        return {
            "place": place,
            "prediction": prediction,
            "novelty": novelty[0] if novelty else None,
            "structural": structural[0] if structural else None,
            "header": {
                name: value
                for name, value in (header[0] if header else {}).items()
                if name not in ("id", "drop", "checksum", "length", "status", "reason", "chunk")
            },
        }
