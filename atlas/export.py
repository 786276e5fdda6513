"""`atlas export`: selected predictions as structure files, a Foldcomp database, FASTA or ESM Atlas metadata.

`atlas export [--id ID ...] [--where PREDICATE] [--representatives] --out PATH
              [--format cif|cif.gz|pdb|foldcomp|fasta|metadata]`

Selection. Without --where: the predictions of the atlas index. With --where: the ok predictions matching a
SQL predicate over the columns of the atlas view (novelty: best_hit, identity, query_coverage,
target_coverage, evalue, novel; structural novelty: structure_hit, structure_tm, structure_aligned_length,
structure_verified, structurally_novel; clusters: cluster, cluster_representative; any header column the
manifest or the index carries, such as description, is_fragment, crc64, header_fields) with every
predictions column still reachable (sequence, plddt, model...), plus `in_atlas` (the prediction is in the
index). The novelty, structural and cluster columns come from their own views, so they hold for predictions
outside the index too. A predicate that names no such column prints DuckDB's message.
`--where "novel AND mean_plddt >= 80"` and `--where "in_atlas AND identity < 0.3"` work alike.
`--representatives` selects the representative of every cluster (the best pTM x pLDDT of its members, as the
ESM Atlas' high-quality set), and-ed with --where when both are given: `atlas export --representatives
--format fasta --out representatives.fasta`, then `--format cif --out representatives/` for the structures.
FASTA headers carry the best structural hit when there is one (`structure_hit=... structure_tm=...`).
With --id (repeatable): the ok predictions of those ids, in the atlas or not (and matching --where if given),
found through the lookup files and `chunk_files` (atlas.lookup): one row group per drop's lookup file and the
chunks' own files are read, not every prediction of the atlas, so one id takes about the same time at 10^7
rows as at 10^3.

Formats and what --out names:
- `cif`, `cif.gz`, `pdb`: a folder, one file per structure named from its id (below). PDB is converted from
  the stored mmCIF by gemmi (pLDDT stays in the B-factors).
- `foldcomp`: a Foldcomp database at PATH (PATH, PATH.index, PATH.lookup, PATH.dbtype), readable by
  `foldcomp.open(PATH)` and by Foldseek; entry names are the safe file stems below.
- `fasta`: one FASTA file of the selected sequences (`>id description` when the manifest has descriptions).
- `metadata`: one Parquet file in the layout of the ESM Atlas release's metadata.parquet (METADATA_SCHEMA):
  id, ptm, plddt (mean, 0-1), num_conf, len, is_fragment (from the manifest; null where it has none),
  sequenceChecksum (CRC64 as 16 upper-case hex digits: the manifest's `crc64` where present, else computed
  here with the algorithm of Bio.SeqUtils.CheckSum.crc64), esmfold_version (the model), atlas_version (the
  drop where the structure was first folded), sequence_dbs (the drops whose manifests hold the sequence, in
  arrival order, comma-separated, as the release writes them).

Names. Ids are NFKD-folded to ASCII, any run of characters outside [A-Za-z0-9._-] replaced by `_`, leading
dots and dashes and trailing dots removed, at most 100 characters (empty: `structure`). Names that collide
(case-insensitively, for macOS and Windows file systems) all get `_` + the first 10 characters of their
checksum, and then, if still not unique, `-1`, `-2`... in (id, checksum, drop, chunk) order: the same
selection always gives the same names, whatever order DuckDB returns rows in. Every path is checked to lie
inside the output folder, and every file is written under a temporary name and moved into place.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import unicodedata
from pathlib import Path

import pyarrow as pa

from atlas.query import ATTACHED_DATABASE, AtlasError, add_outdir_argument, connect, resolve_outdir
from atlas.sql import quote_identifier, sql_string
from atlas.structure import STRUCTURE_COLUMNS, render_mmcif, render_pdb

MAX_NAME = 100
STRUCTURE_FORMATS = {"cif": ".cif", "cif.gz": ".cif.gz", "pdb": ".pdb"}
FORMATS = (*STRUCTURE_FORMATS, "foldcomp", "fasta", "metadata")
FETCH_ROWS = 256
FETCH_METADATA = 100_000
FASTA_WIDTH = 60
# Columns of the manifest besides its base ones (description, crc64, is_fragment, header_fields...) are
# offered to --where; these are the base ones, or predictions' own columns.
MANIFEST_BASE = ("id", "drop", "checksum", "length", "status", "reason", "chunk")
NOVELTY_SELECTED = ("best_hit", "identity", "query_coverage", "target_coverage", "evalue", "novel")
STRUCTURAL_SELECTED = (
    "structure_hit", "structure_tm", "structure_aligned_length", "structure_verified", "structurally_novel",
)  # fmt: skip
CLUSTER_SELECTED = ("cluster", "cluster_representative")
METADATA_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("ptm", pa.float32()),
        ("plddt", pa.float32()),
        ("num_conf", pa.int32()),
        ("len", pa.int32()),
        ("is_fragment", pa.bool_()),
        ("sequenceChecksum", pa.string()),
        ("esmfold_version", pa.string()),
        ("atlas_version", pa.string()),
        ("sequence_dbs", pa.string()),
    ]
)


# ------------------------------------------------------------------------------------------------ checksums


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        value = byte
        for _ in range(8):
            value = (value >> 1) ^ 0xD800000000000000 if value & 1 else value >> 1
        table.append(value)
    return table


CRC64_TABLE = _crc64_table()


def crc64(sequence: str) -> str:
    """CRC-64-ISO of the sequence as UniProt and MGnify show it: 16 upper-case hex digits (the digits of
    Bio.SeqUtils.CheckSum.crc64, without its `CRC-` prefix)."""
    value = 0
    for char in sequence.encode("ascii"):
        value = (value >> 8) ^ CRC64_TABLE[(value ^ char) & 0xFF]
    return f"{value:016X}"


def normalise_crc64(value: str | None) -> str | None:
    if value is None:
        return None
    text = str(value).strip().upper()
    return text[4:] if text.startswith("CRC-") else text


# ---------------------------------------------------------------------------------------------------- names


def safe_name(identifier: str, max_length: int = MAX_NAME) -> str:
    """A file name stem from an id: only [A-Za-z0-9._-], no leading dot or dash, at most max_length."""
    text = unicodedata.normalize("NFKD", identifier).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    text = text.lstrip(".-")[:max_length].rstrip(".")
    return text or "structure"


def assign_names(keys: list[tuple[str, str, str, str]]) -> dict[tuple, str]:
    """Unique, deterministic file stems for (id, checksum, drop, chunk) keys (see the module docstring)."""
    keys = sorted(set(keys), key=lambda key: tuple("" if part is None else str(part) for part in key))
    names = {key: safe_name(key[0]) for key in keys}
    groups: dict[str, list[tuple]] = {}
    for key in keys:
        groups.setdefault(names[key].casefold(), []).append(key)
    for members in groups.values():
        if len(members) > 1:
            for key in members:
                names[key] = f"{names[key]}_{(key[1] or '')[:10]}".rstrip("_")
    for _ in range(len(keys) + 1):
        groups = {}
        for key in keys:
            groups.setdefault(names[key].casefold(), []).append(key)
        clashes = [members for members in groups.values() if len(members) > 1]
        if not clashes:
            break
        for members in clashes:
            for number, key in enumerate(members, start=1):
                names[key] = f"{names[key]}-{number}"
    return names


def _inside(folder: Path, name: str) -> Path:
    target = (folder / name).resolve()
    if target.parent != folder or not target.name:
        raise AtlasError(f"refusing to write {name!r}: it would land outside {folder}")
    return target


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ selection


def view_columns(connection, view: str) -> list[str]:
    return [row[0] for row in connection.execute(f"DESCRIBE {view}").fetchall()]


def selection_sql(connection, where: str | None, representatives: bool = False) -> str:
    """SELECT of the chosen predictions with the atlas view's columns beside the predictions columns.

    Novelty comes from the novelty view (one row per checksum, a non-novel row first, as in the index), the
    structural columns from structural_best and the cluster from cluster_of (atlas.views), header columns
    from the queued manifest row of the same id and drop, any other atlas column from the index row.
    """
    if where is not None and not where.strip():
        raise AtlasError('--where needs a predicate, e.g. "novel AND mean_plddt >= 90"')
    views = {row[0] for row in connection.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    if representatives and "cluster_of" not in views:
        raise AtlasError("this atlas has no clusters (its database predates them): rerun the workflow")
    predictions = view_columns(connection, "predictions")
    taken = set(predictions)
    novelty = [name for name in NOVELTY_SELECTED if name not in taken]
    taken.update(novelty)
    # a database of an earlier version has neither view: those columns come from nowhere
    structural = [name for name in STRUCTURAL_SELECTED if name not in taken and "structural_best" in views]
    taken.update(structural)
    cluster = [name for name in CLUSTER_SELECTED if name not in taken and "cluster_of" in views]
    taken.update(cluster)
    manifest = [name for name in view_columns(connection, "manifest") if name not in (*MANIFEST_BASE, *taken)]
    taken.update(manifest)
    atlas = [name for name in view_columns(connection, "atlas") if name not in taken]
    select = [f"p.{quote_identifier(name)}" for name in predictions]
    select += [f"n.{quote_identifier(name)}" for name in novelty]
    select += [f"s.{quote_identifier(name)}" for name in structural]
    select += [f"c.{quote_identifier(name)}" for name in cluster]
    select += [f"m.{quote_identifier(name)}" for name in manifest]
    select += [f"a.{quote_identifier(name)}" for name in atlas]
    select.append("a.id IS NOT NULL AS in_atlas")
    manifest_join = ""
    if manifest:
        listed = ", ".join(quote_identifier(name) for name in ("id", "drop", *manifest))
        manifest_join = (
            f"LEFT JOIN (SELECT {listed} FROM manifest WHERE status = 'queued') m "
            'ON m.id = p.id AND m."drop" = p."drop"'
        )
    atlas_listed = ", ".join(quote_identifier(name) for name in ("id", "checksum", "drop", "chunk", *atlas))
    joined = f"""
        SELECT {", ".join(select)}
        FROM predictions p
        LEFT JOIN (
            SELECT * FROM novelty
            QUALIFY row_number() OVER (PARTITION BY checksum ORDER BY novel, best_hit) = 1
        ) n ON n.checksum = p.checksum
        {"LEFT JOIN structural_best s ON s.checksum = p.checksum" if structural else ""}
        {"LEFT JOIN cluster_of c ON c.checksum = p.checksum" if cluster else ""}
        {manifest_join}
        LEFT JOIN (SELECT {atlas_listed} FROM atlas) a
            ON a.checksum = p.checksum AND a.id = p.id AND a."drop" = p."drop" AND a.chunk = p.chunk
        WHERE p.status = 'ok'"""
    predicates = ["in_atlas" if where is None and not representatives else f"({where or 'true'})"]
    if representatives:
        predicates.append("cluster_representative IS TRUE")
    return f"SELECT * FROM ({joined}) AS joined WHERE {' AND '.join(predicates)}"


def narrow_to_ids(connection, ids: list[str]) -> None:
    """Shadow the views predictions, novelty, manifest, atlas (and structural_best, cluster_of) with
    temporary ones holding IDS only: predictions and novelty over the files of the chunks that lookup_by_id
    names for them (chunk_files), the others filtered by id or checksum, so a selection by id never scans
    the atlas."""
    from atlas.views import parquet_source

    listed = ", ".join(sql_string(identifier) for identifier in ids)
    files = connection.execute(
        "SELECT DISTINCT f.predictions, f.novelty, l.checksum FROM lookup_by_id l JOIN chunk_files f"
        f""" USING ("drop", chunk) WHERE l.id IN ({listed}) AND l.status = 'queued' ORDER BY ALL"""
    ).fetchall()
    checksums = ", ".join(sql_string(row[2]) for row in files) or "NULL"
    views = {row[0] for row in connection.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    for view in ("structural_best", "cluster_of"):  # per checksum, filtered before their window
        if view in views:
            original = f"{ATTACHED_DATABASE}.main.{view}"
            narrowed = f"SELECT * FROM {original} WHERE checksum IN ({checksums})"
            connection.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {narrowed}")
    for stage, column in (("predictions", 0), ("novelty", 1)):
        chunk_paths = sorted({row[column] for row in files if row[column]})  # a chunk may hold several ids
        locations = [f"atlas_root() || {sql_string(path)}" for path in chunk_paths]
        source = parquet_source(locations, stage)
        narrowed = f" WHERE id IN ({listed})" if stage == "predictions" else ""
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {stage} AS SELECT * FROM {source}{narrowed}")
    for view in ("manifest", "atlas"):
        original = f"{ATTACHED_DATABASE}.main.{view}"
        connection.execute(
            f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT * FROM {original} WHERE id IN ({listed})"
        )


# ------------------------------------------------------------------------------------------------- writers


def _progress(total: int | None, progress: bool | None):
    from tqdm import tqdm

    return tqdm(
        total=total, unit="structure", desc="export", disable=None if progress is None else not progress
    )


def _structures(connection, source: str, progress: bool | None):
    """(name, predictions row) per selected structure, streamed; names from assign_names over the whole
    selection; the row holds STRUCTURE_COLUMNS (structure None when there is none)."""
    keys = connection.execute(f'SELECT id, checksum, "drop", chunk FROM ({source}) AS selected').fetchall()
    names = assign_names([tuple(key) for key in keys])
    listed = ", ".join(quote_identifier(name) for name in STRUCTURE_COLUMNS)
    connection.execute(f'SELECT checksum, "drop", chunk, {listed} FROM ({source}) AS selected')
    with _progress(len(names), progress) as bar:
        while rows := connection.fetchmany(FETCH_ROWS):
            for checksum, drop, chunk, *values in rows:
                row = dict(zip(STRUCTURE_COLUMNS, values, strict=True))
                bar.update(1)
                yield names[(row["id"], checksum, drop, chunk)], row


def _write_files(connection, source: str, folder: Path, fmt: str, progress) -> dict[str, int]:
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    extension = STRUCTURE_FORMATS[fmt]
    written = missing = 0
    for name, row in _structures(connection, source, progress):
        if row["structure"] is None:
            missing += 1
            continue
        target = _inside(folder, name + extension)
        if fmt == "pdb":
            data = render_pdb(row).encode("ascii")
        else:
            data = render_mmcif(row).encode("utf-8")
            if fmt == "cif.gz":
                data = gzip.compress(data, mtime=0)
        _write_atomic(target, data)
        written += 1
    return {"written": written, "missing": missing}


def _write_foldcomp(connection, source: str, path: Path, progress) -> dict[str, int]:
    """A Foldcomp database, laid out as `foldcomp compress --db` writes one: the entries back to back, .index
    (number, offset, size), .lookup (number, name, 0) and .dbtype (foldcomp's generic type, 12)."""
    import foldcomp

    path.parent.mkdir(parents=True, exist_ok=True)
    parts = {suffix: path.with_name(path.name + suffix) for suffix in ("", ".index", ".lookup", ".dbtype")}
    tmp = {suffix: target.with_name(f".{target.name}.tmp-{os.getpid()}") for suffix, target in parts.items()}
    written = missing = 0
    try:
        with (
            open(tmp[""], "wb") as data,
            open(tmp[".index"], "w") as index,
            open(tmp[".lookup"], "w") as lookup,
        ):
            offset = 0
            for name, row in _structures(connection, source, progress):
                if row["structure"] is None:
                    missing += 1
                    continue
                entry = foldcomp.compress(name, render_pdb(row))
                data.write(entry)
                index.write(f"{written}\t{offset}\t{len(entry)}\n")
                lookup.write(f"{written}\t{name}\t0\n")
                offset += len(entry)
                written += 1
        tmp[".dbtype"].write_bytes(FOLDCOMP_DBTYPE)
        for suffix, target in parts.items():
            os.replace(tmp[suffix], target)
    finally:
        for leftover in tmp.values():
            leftover.unlink(missing_ok=True)
    return {"written": written, "missing": missing}


# the database type foldcomp's own writer records (an int32; "generic" in MMseqs2's numbering)
FOLDCOMP_DBTYPE = (12).to_bytes(4, "little")


def _write_fasta(connection, source: str, path: Path, progress) -> dict[str, int]:
    columns = [row[0] for row in connection.execute(f"DESCRIBE {source}").fetchall()]
    description = "description" if "description" in columns else "NULL"
    hit = "structure_hit" if "structure_hit" in columns else "NULL"
    tm = "structure_tm" if "structure_tm" in columns else "NULL"
    connection.execute(
        f"SELECT id, {description}, {hit}, {tm}, sequence FROM ({source}) AS selected"
        ' ORDER BY "drop", chunk, id'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    written = 0
    try:
        with open(tmp, "w") as handle, _progress(None, progress) as bar:
            while rows := connection.fetchmany(10_000):
                for identifier, text, structure_hit, structure_tm, sequence in rows:
                    header = identifier if not text else f"{identifier} {text}"
                    if structure_hit:
                        header += f" structure_hit={structure_hit} structure_tm={structure_tm:.3f}"
                    header = " ".join(header.split())  # a header is one line
                    lines = [sequence[i : i + FASTA_WIDTH] for i in range(0, len(sequence), FASTA_WIDTH)]
                    handle.write(f">{header}\n" + "\n".join(lines) + "\n")
                    written += 1
                bar.update(len(rows))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"written": written, "missing": 0}


def _drop_order(connection) -> list[str]:
    try:
        return list(connection.execute("SELECT drops FROM atlas_info").fetchone()[0])
    except Exception:  # noqa: BLE001 - an index without atlas_info: alphabetical order
        return []


def write_metadata(connection, source: str, path: Path) -> int:
    """The selection as the ESM Atlas release's metadata Parquet (see the module docstring), streamed in
    batches of FETCH_METADATA rows; returns the number of rows."""
    import pyarrow.parquet as pq

    columns = {row[0] for row in connection.execute(f"DESCRIBE {source}").fetchall()}
    crc = "s.crc64" if "crc64" in columns else "NULL"
    fragment = "s.is_fragment" if "is_fragment" in columns else "NULL"
    order = {drop: position for position, drop in enumerate(_drop_order(connection))}
    connection.execute(
        f"""WITH selected AS ({source}),
        holders AS (
            SELECT checksum, list(DISTINCT "drop") AS drops FROM lookup_by_checksum
            WHERE status IN ('queued', 'duplicate') AND checksum IN (SELECT checksum FROM selected)
            GROUP BY checksum
        )
        SELECT s.id, s.ptm, s.mean_plddt / 100.0, s.num_conf, s.length, CAST({fragment} AS BOOLEAN),
            CAST({crc} AS VARCHAR), s.sequence, s.model, s."drop", h.drops
        FROM selected s LEFT JOIN holders h ON h.checksum = s.checksum
        ORDER BY s."drop", s.chunk, s.id"""
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    written = 0
    try:
        with pq.ParquetWriter(tmp, METADATA_SCHEMA, compression="zstd") as writer:
            while rows := connection.fetchmany(FETCH_METADATA):
                records = []
                for row in rows:
                    identifier, ptm, plddt, num_conf, length, is_fragment, crc_value, sequence = row[:8]
                    model, drop, drops = row[8:]
                    holders = sorted(
                        set(drops or [drop]), key=lambda name: (order.get(name, len(order)), name)
                    )
                    records.append(
                        {
                            "id": identifier,
                            "ptm": ptm,
                            "plddt": plddt,
                            "num_conf": num_conf,
                            "len": length,
                            "is_fragment": is_fragment,
                            "sequenceChecksum": normalise_crc64(crc_value) or crc64(sequence),
                            "esmfold_version": model,
                            "atlas_version": drop,
                            "sequence_dbs": ",".join(holders),
                        }
                    )
                writer.write_table(pa.Table.from_pylist(records, schema=METADATA_SCHEMA))
                written += len(records)
            if not written:
                writer.write_table(METADATA_SCHEMA.empty_table())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def export(
    outdir: str | Path,
    out: str | Path,
    where: str | None = None,
    fmt: str = "cif",
    progress: bool | None = None,
    ids: list[str] | None = None,
    representatives: bool = False,
) -> dict[str, int]:
    """Write the selection in FORMAT to OUT; returns {"written": n, "missing": rows without mmCIF text}."""
    import duckdb

    if fmt not in FORMATS:
        raise AtlasError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    connection = connect(outdir)
    try:
        if ids:
            narrow_to_ids(connection, ids)
            where = where or "true"
        source = selection_sql(connection, where, representatives)
        out = Path(out)
        if fmt in STRUCTURE_FORMATS:
            return _write_files(connection, source, out, fmt, progress)
        if out.is_dir():
            raise AtlasError(f"--out {out} is a folder: format {fmt} writes one file, name it")
        if fmt == "foldcomp":
            return _write_foldcomp(connection, source, out, progress)
        if fmt == "fasta":
            return _write_fasta(connection, source, out, progress)
        return {"written": write_metadata(connection, source, out), "missing": 0}
    except duckdb.Error as error:
        raise AtlasError(str(error)) from error
    finally:
        connection.close()


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas export",
        description="write the selected predictions as mmCIF, PDB, a Foldcomp database, FASTA or ESM Atlas "
        "metadata",
    )
    parser.add_argument(
        "--where",
        help="SQL predicate over the atlas view's columns and the predictions columns, e.g. "
        '"novel AND mean_plddt >= 90" (default: the atlas index rows)',
    )
    parser.add_argument(
        "--id",
        action="append",
        dest="ids",
        metavar="ID",
        help="export the predictions of this id, in the atlas or not (repeatable; read through the lookup "
        "files, so it is fast at any atlas size); with --where, those of them that match",
    )
    parser.add_argument(
        "--representatives",
        action="store_true",
        help="the representative of every cluster (best pTM x pLDDT), and-ed with --where",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="a folder for cif, cif.gz and pdb; the database path for foldcomp; the file for fasta and "
        "metadata",
    )
    parser.add_argument("--format", choices=FORMATS, default="cif")
    add_outdir_argument(parser)
    args = parser.parse_args(argv)
    try:
        result = export(
            resolve_outdir(args.outdir),
            args.out,
            args.where,
            args.format,
            ids=args.ids,
            representatives=args.representatives,
        )
    except (AtlasError, OSError) as error:
        print(f"atlas export: error: {error}", file=sys.stderr)
        return 1
    what = "sequences" if args.format == "fasta" else "rows" if args.format == "metadata" else "structures"
    print(f"wrote {result['written']} {what} ({args.format}) to {args.out}")
    if result["missing"]:
        print(f"atlas export: {result['missing']} selected predictions have no mmCIF text", file=sys.stderr)
    return 0
