"""atlas index: the index equals a plain-Python recomputation of the filter over the stage Parquet files.

`make_outdir` (also used by tests/test_query.py) writes manifests, chunk FASTAs, predictions and novelty
files with the exact SPEC columns: real E. coli sequences, varied metrics, failed rows, duplicates across
drops and a drop whose records are all duplicates or rejected (no chunk).
"""

from __future__ import annotations

import functools
import random
import re
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas import clusters, index
from atlas.fasta import read_fasta, sequence_checksum
from atlas.lookup import ROW_GROUP_ROWS, write_lookups
from atlas.tables import ATLAS_INDEX, CLUSTER_MEMBERS, MANIFEST, NOVELTY, PREDICTIONS, STRUCTURAL
from atlas.views import OUTCOME_NOVELTY_COLUMNS, OUTCOME_STRUCTURAL_COLUMNS, index_query

DATA = Path(__file__).resolve().parent / "data"  # as tests/conftest.py's TEST_DATA
PDB = DATA / "mgnifams_esmfold_khalifam1_1-4587088355.pdb"
MIN_PLDDT, MIN_PTM = 70.0, 0.7


@functools.cache
def base_mmcif() -> str:
    if PDB.exists():
        import gemmi

        structure = gemmi.read_structure(str(PDB))
        structure.setup_entities()
        return structure.make_mmcif_document().as_string()
    return "data_test\n_entry.id test\n"


@functools.cache
def real_sequences(count: int = 60) -> list[str]:
    source = DATA / "UP000000625_83333.fasta"
    sequences = [r.sequence for r in read_fasta(source) if 30 <= len(r.sequence) <= 200]
    return sequences[:count]


def mmcif_for(checksum: str) -> str:
    """A real mmCIF text, marked with the checksum in a trailing comment so tests can tell files apart."""
    return f"{base_mmcif()}# checksum {checksum}\n"


def write_drop(outdir: Path, drop: str, records: list[dict], novelty: bool = True) -> None:
    """Write the stage files of one drop from record dicts.

    A record: id, sequence, status (queued | duplicate | rejected), and for queued ones chunk, result
    (ok | failed), mean_plddt, ptm, novel (with best_hit, identity, query_coverage when not novel).
    """
    chunk_dir = outdir / "chunks" / drop
    chunk_dir.mkdir(parents=True, exist_ok=True)
    manifest = []
    by_chunk: dict[str, list[dict]] = {}
    for record in records:
        checksum = sequence_checksum(record["sequence"])
        queued = record["status"] == "queued"
        manifest.append(
            {
                "id": record["id"],
                "drop": drop,
                "checksum": checksum,
                "length": len(record["sequence"]),
                "status": record["status"],
                "reason": record.get("reason"),
                "chunk": record["chunk"] if queued else None,
            }
        )
        if queued:
            by_chunk.setdefault(record["chunk"], []).append({**record, "checksum": checksum})
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST), chunk_dir / "manifest.parquet")
    for chunk, chunk_records in by_chunk.items():
        (chunk_dir / f"{chunk}.fasta").write_text(
            "".join(f">{r['id']}\n{r['sequence']}\n" for r in chunk_records)
        )
        predictions, novelty_rows = [], []
        for r in chunk_records:
            ok = r["result"] == "ok"
            length = len(r["sequence"])
            plddt = [float(r["mean_plddt"])] * length if ok else None
            predictions.append(
                {
                    "id": r["id"],
                    "checksum": r["checksum"],
                    "sequence": r["sequence"],
                    "length": length,
                    "mean_plddt": r["mean_plddt"] if ok else None,
                    "ptm": r["ptm"] if ok else None,
                    "num_conf": sum(1 for value in plddt if value > 70) if ok else None,
                    "plddt": plddt,
                    "max_pae": 31.75 if ok else None,
                    "structure_format": "mmcif" if ok else None,
                    "structure": mmcif_for(r["checksum"]).encode() if ok else None,
                    "model": "tiny",
                    "num_recycles": 4,
                    "status": r["result"],
                    "error": None if ok else "RuntimeError: CUDA out of memory even at batch size 1",
                    "drop": drop,
                    "chunk": chunk,
                }
            )
            novel = r.get("novel", True)
            novelty_rows.append(
                {
                    "checksum": r["checksum"],
                    "best_hit": None if novel and "best_hit" not in r else r.get("best_hit", "P00001"),
                    "identity": r.get("identity"),
                    "query_coverage": r.get("query_coverage"),
                    "target_coverage": r.get("query_coverage"),
                    "evalue": 1e-30 if r.get("identity") is not None else None,
                    "novel": novel,
                }
            )
        prediction_dir = outdir / "predictions" / drop
        prediction_dir.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_pylist(predictions, schema=PREDICTIONS), prediction_dir / f"{chunk}.parquet"
        )
        # resume part files of the fold stage live in a sibling folder: never read
        parts = prediction_dir / f"{chunk}.parquet.parts"
        parts.mkdir(exist_ok=True)
        (parts / "part-0000.parquet").write_bytes(b"not parquet")
        if novelty:
            novelty_dir = outdir / "novelty" / drop
            novelty_dir.mkdir(parents=True, exist_ok=True)
            pq.write_table(
                pa.Table.from_pylist(novelty_rows, schema=NOVELTY), novelty_dir / f"{chunk}.parquet"
            )


def example_drops(seed: int = 7) -> dict[str, list[dict]]:
    """Three drops: d1 (two chunks), d2 (duplicates of d1, new sequences, a failure), d3 (no chunk)."""
    rng = random.Random(seed)
    sequences = real_sequences()
    hostile_ids = ["../../x", "a/b", "a b", "é", "a_b", "A_B", "..hidden", "-dash", "x" * 300]

    def queued(number: int, chunk: str, **fixed) -> dict:
        identity = rng.choice([None, 0.35, 0.95, 1.0])
        coverage = rng.choice([0.5, 0.9])
        record = {
            "id": fixed.pop("id", f"seq{number}"),
            "sequence": sequences[number],
            "status": "queued",
            "chunk": chunk,
            "result": "ok",
            "mean_plddt": round(rng.uniform(40, 95), 2),
            "ptm": round(rng.uniform(0.3, 0.95), 3),
            "identity": identity,
            "query_coverage": coverage if identity else None,
            "best_hit": f"P{number:05d}" if identity else None,
            "novel": not (identity is not None and identity >= 0.9 and coverage >= 0.8),
        }
        record.update(fixed)
        return record

    d1 = [queued(i, "b064_0000") for i in range(0, 12)] + [queued(i, "b128_0000") for i in range(12, 20)]
    d1[0].update(mean_plddt=MIN_PLDDT, ptm=MIN_PTM, novel=True, identity=None, query_coverage=None)  # at edge
    d1[1].update(mean_plddt=MIN_PLDDT - 0.01, ptm=0.9, novel=True)
    d1[2].update(mean_plddt=90.0, ptm=MIN_PTM - 0.001, novel=True)
    d1[3].update(result="failed")
    d1[4].update(mean_plddt=92.0, ptm=0.92, novel=False, identity=0.97, query_coverage=0.95)
    for record, hostile in zip(d1[5:], hostile_ids, strict=False):
        record.update(id=hostile, mean_plddt=88.0, ptm=0.85, novel=True)
    d1.append({"id": "short1", "sequence": "MKV", "status": "rejected", "reason": "shorter than 16"})
    d1.append({"id": "seq0-again", "sequence": sequences[0], "status": "duplicate", "reason": "seq0"})
    d2 = [queued(i, "b064_0000") for i in range(20, 30)]
    d2[0].update(result="failed")
    d2[1].update(mean_plddt=85.0, ptm=0.8, novel=True)
    d2 += [
        {"id": "d2-copy-of-seq4", "sequence": sequences[4], "status": "duplicate", "reason": "seq4 in d1"},
        {"id": "d2-copy-of-seq5", "sequence": sequences[5], "status": "duplicate", "reason": "in d1"},
        {"id": "bad", "sequence": "M" * 5000, "status": "rejected", "reason": "longer than 1280"},
        # defensive: a sequence folded again in a later drop; the index keeps the earlier drop's row
        queued(6, "b064_0000", id="seq6-refolded", mean_plddt=99.0, ptm=0.99, novel=True),
    ]
    d3 = [
        {"id": "d3-copy", "sequence": sequences[21], "status": "duplicate", "reason": "in d2"},
        {"id": "d3-short", "sequence": "MK", "status": "rejected", "reason": "shorter than 16"},
    ]
    return {"d1": d1, "d2": d2, "d3": d3}


def make_outdir(root: Path, novelty: bool = True, build: bool = True, drops: dict | None = None) -> Path:
    """An outdir with the stage files of example_drops(), and (build=True) its atlas index."""
    outdir = root / "results"
    drops = drops or example_drops()
    for drop, records in drops.items():
        write_drop(outdir, drop, records, novelty=novelty)
    if build:
        build_index(outdir, list(drops), novelty)
    return outdir


def stage_files(outdir: Path, drops: list[str], novelty: bool) -> dict[str, list[Path]]:
    """The files the workflow declares as the index's inputs: every manifest, chunk predictions, novelty."""
    return {
        "manifests": [outdir / "chunks" / drop / "manifest.parquet" for drop in drops],
        "predictions": [
            p for drop in drops for p in sorted((outdir / "predictions" / drop).glob("*.parquet"))
        ],
        "novelty": [p for drop in drops for p in sorted((outdir / "novelty" / drop).glob("*.parquet"))]
        if novelty
        else [],
    }


def build_index(
    outdir: Path, drops: list[str], novelty: bool, structural_computed=False, clusters=None, **files
):
    given = {"structural": [], **stage_files(outdir, drops, novelty), **files}
    lookups = []
    for drop in drops:
        paths = [outdir / "atlas" / "lookup" / f"{drop}.by_{key}.parquet" for key in ("id", "checksum")]
        if not all(path.exists() for path in paths):
            write_lookups(outdir / "chunks" / drop / "manifest.parquet", *paths)
        lookups += paths
    staged = outdir / "atlas" / "staged"
    return index.build_index(
        given["manifests"],
        given["predictions"],
        given["novelty"],
        staged / "index.parquet",
        staged / "atlas.duckdb",
        drops,
        MIN_PLDDT,
        MIN_PTM,
        novelty,
        lookups,
        structural=given["structural"],
        structural_computed=structural_computed,
        clusters=clusters,
        outcome_parts=given.get("outcome_parts", ()),
    )


def expected_index(outdir: Path, drops: list[str], novelty: bool) -> list[tuple]:
    """Plain-Python recomputation of the index from the stage Parquet files."""
    rows, novelty_rows = [], {}
    for position, drop in enumerate(drops):
        for path in sorted((outdir / "predictions" / drop).glob("*.parquet")):
            if path.is_file():
                rows += [(position, row) for row in pq.read_table(path).to_pylist()]
        for path in sorted((outdir / "novelty" / drop).glob("*.parquet")):
            for row in pq.read_table(path).to_pylist():
                novelty_rows.setdefault(row["checksum"], row)
    chosen: dict[str, tuple] = {}
    for position, row in sorted(rows, key=lambda item: (item[0], item[1]["chunk"], item[1]["id"])):
        if row["status"] == "ok":
            chosen.setdefault(row["checksum"], (position, row))
    result = []
    for position, row in chosen.values():
        if row["mean_plddt"] < MIN_PLDDT - 1e-6 or row["ptm"] < MIN_PTM - 1e-6:  # float32 storage
            continue
        hit = novelty_rows.get(row["checksum"]) if novelty else None
        if novelty and not (hit and hit["novel"]):
            continue
        result.append((position, row["chunk"], row["id"], row["checksum"], hit["best_hit"] if hit else None))
    return sorted(result)


def read_index(outdir: Path) -> list[tuple]:
    order = {drop: position for position, drop in enumerate(["d1", "d2", "d3"])}
    table = pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()
    return [(order[r["drop"]], r["chunk"], r["id"], r["checksum"], r["best_hit"]) for r in table]


@pytest.mark.parametrize("novelty", [True, False])
def test_index_equals_python_recomputation(tmp_path, novelty):
    outdir = make_outdir(tmp_path, novelty=novelty)
    expected = expected_index(outdir, ["d1", "d2", "d3"], novelty)
    assert read_index(outdir) == expected
    assert len(expected) >= (4 if novelty else 8)
    table = pq.read_table(outdir / "atlas" / "index.parquet")
    assert [(f.name, f.type) for f in table.schema] == [(f.name, f.type) for f in ATLAS_INDEX]
    rows = table.to_pylist()
    assert len({r["checksum"] for r in rows}) == len(rows)
    assert all(r["novelty_computed"] is novelty for r in rows)
    if novelty:
        assert all(r["novel"] is True for r in rows)
    else:
        assert all(r[name] is None for r in rows for name in OUTCOME_NOVELTY_COLUMNS)
    # no structural files, no cluster table: the columns are there, null, and the index says so
    assert all(r[name] is None for r in rows for name in (*OUTCOME_STRUCTURAL_COLUMNS, "cluster"))
    assert all(r["structural_computed"] is False for r in rows)
    ids = {r["id"] for r in rows}
    assert "seq0" in ids and "seq1" not in ids and "seq2" not in ids and "seq3" not in ids  # >= edges, failed
    assert "seq6-refolded" not in ids  # the earlier drop's row is kept
    assert not list((outdir / "atlas").glob(".*")), "temporary files left behind"
    # the published atlas is the staged one, swapped in whole
    staged = outdir / "atlas" / "staged"
    assert (outdir / "atlas" / "index.parquet").read_bytes() == (staged / "index.parquet").read_bytes()
    assert (outdir / "atlas" / "atlas.duckdb").read_bytes() == (staged / "atlas.duckdb").read_bytes()


def test_views_and_info(tmp_path):
    outdir = make_outdir(tmp_path)
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        count = lambda sql: connection.execute(sql).fetchone()[0]  # noqa: E731
        assert count("SELECT count(*) FROM manifest") == sum(len(v) for v in example_drops().values())
        assert count("SELECT count(*) FROM predictions") == 20 + 11
        assert count("SELECT count(*) FROM novelty") == 31
        assert (
            count("SELECT count(*) FROM atlas")
            == pq.read_metadata(outdir / "atlas" / "index.parquet").num_rows
        )
        # every id of a sequence in the atlas is reachable through the manifest
        ids = connection.execute(
            "SELECT list_sort(list(m.id)) FROM atlas a JOIN manifest m USING (checksum) WHERE a.id = 'seq0'"
        ).fetchone()[0]
        assert ids == ["seq0", "seq0-again"]
        info = connection.execute(
            "SELECT min_plddt, min_ptm, novelty_computed, drops FROM atlas_info"
        ).fetchone()
        assert info == (MIN_PLDDT, MIN_PTM, True, ["d1", "d2", "d3"])
        assert count("SELECT count(*) FROM predictions WHERE decode(structure) LIKE 'data_%'") == 29


def test_no_novelty_views_are_empty_with_columns(tmp_path):
    outdir = make_outdir(tmp_path, novelty=False)
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM novelty").fetchone()[0] == 0
        columns = [row[0] for row in connection.execute("DESCRIBE novelty").fetchall()]
        assert columns == NOVELTY.names
        assert connection.execute("SELECT novelty_computed FROM atlas_info").fetchone()[0] is False


def test_moved_outdir_keeps_working_through_the_root_variable(tmp_path):
    outdir = make_outdir(tmp_path / "old")
    moved = tmp_path / "new" / "results"
    shutil.move(str(outdir), str(moved))
    with duckdb.connect(str(moved / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        with pytest.raises(duckdb.Error):
            connection.execute("SELECT count(*) FROM predictions").fetchall()
        connection.execute(f"SET VARIABLE {index.ROOT_VARIABLE} = ?", [str(moved)])
        assert connection.execute("SELECT count(*) FROM predictions").fetchone()[0] == 31


def test_only_drops_without_chunks(tmp_path):
    drops = {"d3": example_drops()["d3"]}
    outdir = make_outdir(tmp_path, drops=drops)
    assert pq.read_table(outdir / "atlas" / "index.parquet").num_rows == 0
    assert pq.read_schema(outdir / "atlas" / "index.parquet").names == ATLAS_INDEX.names
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM predictions").fetchone()[0] == 0
        assert connection.execute("SELECT count(*) FROM manifest").fetchone()[0] == 2
        assert "structure" in [row[0] for row in connection.execute("DESCRIBE predictions").fetchall()]


def test_a_queued_record_without_prediction_stops_the_index_and_keeps_the_atlas(tmp_path):
    outdir = make_outdir(tmp_path)
    before = (outdir / "atlas" / "atlas.duckdb").read_bytes()
    (outdir / "predictions" / "d2" / "b064_0000.parquet").unlink()
    with pytest.raises(index.IncompleteAtlasError) as error:  # the chunk file is not among the inputs
        build_index(outdir, ["d1", "d2"], True)
    message = str(error.value)
    assert "11 queued records have no prediction row" in message and "d2/b064_0000" in message
    assert (outdir / "atlas" / "atlas.duckdb").read_bytes() == before
    # a declared input that is missing is named too
    missing = outdir / "predictions" / "d2" / "b064_0000.parquet"
    with pytest.raises(duckdb.Error, match="b064_0000.parquet"):
        build_index(outdir, ["d1", "d2"], True, predictions=[missing])


def test_only_the_given_drops_are_indexed(tmp_path):
    outdir = make_outdir(tmp_path, build=False)
    build_index(outdir, ["d1"], True)
    assert {r["drop"] for r in pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()} == {"d1"}
    assert read_index(outdir) == expected_index(outdir, ["d1"], True)


def test_index_query_never_reads_the_structures(tmp_path):
    outdir = make_outdir(tmp_path)
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        query = index_query(["d1", "d2", "d3"], True)
        plan = "\n".join(row[-1] for row in connection.execute(f"EXPLAIN {query}").fetchall())
    assert "mean_plddt" in plan and not re.search(r"\bstructure\b", plan) and "sequence" not in plan


def test_views_glob_the_drop_folders_never_list_files(tmp_path):
    outdir = make_outdir(tmp_path)
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        sql = connection.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'predictions'").fetchone()[
            0
        ]
    assert "/predictions/d1/*.parquet" in sql and "b064_0000" not in sql


def test_lookup_by_id_or_checksum_reads_one_row_group_and_one_predictions_file(tmp_path):
    outdir = make_outdir(tmp_path)
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        drop, chunk, path = connection.execute(
            "SELECT l.drop, l.chunk, f.predictions FROM lookup_by_id l JOIN chunk_files f USING (drop, chunk)"
            " WHERE l.id = 'seq14'"
        ).fetchone()
        assert (drop, chunk, path) == ("d1", "b128_0000", "/predictions/d1/b128_0000.parquet")
        checksum = sequence_checksum(real_sequences()[21])
        assert connection.execute(
            "SELECT list(id ORDER BY id) FROM lookup_by_checksum WHERE checksum = ?", [checksum]
        ).fetchone()[0] == ["d3-copy", "seq21"]
    # a drop of 5 row groups: one id is found in one of them
    big = tmp_path / "big"
    rows = 4 * ROW_GROUP_ROWS + 10
    manifest = pa.table(
        {
            "id": [f"r{i}" for i in range(rows)],
            "drop": ["big"] * rows,
            "checksum": [f"{i * 7919 % rows:032x}" for i in range(rows)],
            "length": [100] * rows,
            "status": ["queued"] * rows,
            "reason": [None] * rows,
            "chunk": [f"c{i % 7}" for i in range(rows)],
            "crc64": [None] * rows,
            "description": [None] * rows,
            "is_fragment": [None] * rows,
            "header_fields": [[] for _ in range(rows)],
        },
        schema=MANIFEST,
    )
    big.mkdir()
    pq.write_table(manifest, big / "manifest.parquet")
    assert write_lookups(big / "manifest.parquet", big / "by_id.parquet", big / "by_checksum.parquet") == rows
    for name, column, value in (("by_id", "id", "r123456"), ("by_checksum", "checksum", f"{5:032x}")):
        sql = f"SELECT * FROM read_parquet('{big / name}.parquet') WHERE {column} = '{value}'"
        plan = duckdb.connect().execute(f"EXPLAIN ANALYZE {sql}").fetchall()[0][1]
        assert "Row Groups Scanned: 1 / 5" in plan, plan[-800:]


@pytest.mark.parametrize(("novelty", "structural"), [(True, True), (True, False), (False, False)])
def test_index_from_drop_outcome_parts_equals_the_index_from_the_stage_files(tmp_path, novelty, structural):
    """The workflow's way (one outcome part per drop, written once; the index reads the parts) gives the
    same index and counts as the index computed from every stage file at once. Not for the defensive case
    of a sequence queued in two drops (which the split prevents): a part holds its own drop's verdicts."""
    drops = ["d1", "d2", "d3"]
    records = example_drops()
    records["d2"] = [record for record in records["d2"] if record["id"] != "seq6-refolded"]
    outdir = make_outdir(tmp_path, novelty=novelty, build=False, drops=records)
    extra = {}
    if structural:
        write_structural_and_clusters(outdir, drops)
        extra = {
            "structural": [
                p for drop in drops for p in sorted((outdir / "structural" / drop).glob("*.parquet"))
            ],
            "structural_computed": True,
            "clusters": outdir / "clusters" / "clusters.parquet",
        }
    direct_counts = build_index(outdir, drops, novelty, **extra)
    direct_rows = pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()
    files = {**stage_files(outdir, drops, novelty), "structural": extra.get("structural", [])}
    parts = []
    for drop in drops:
        part = outdir / "atlas" / "parts" / f"{drop}.outcomes.parquet"
        own = {
            stage: [path for path in files[stage] if path.parent.name == drop]
            for stage in files
            if stage != "manifests"
        }
        manifest = outdir / "chunks" / drop / "manifest.parquet"
        index.write_drop_outcomes(
            manifest, own["predictions"], own["novelty"], part, MIN_PLDDT, MIN_PTM, own["structural"]
        )
        inputs = [manifest, *own["predictions"], *own["novelty"], *own["structural"]]
        assert index.part_is_current(part, inputs, MIN_PLDDT, MIN_PTM)
        assert not index.part_is_current(part, inputs, MIN_PLDDT + 1, MIN_PTM)
        parts.append(part)
    assert build_index(outdir, drops, novelty, **extra, outcome_parts=parts) == direct_counts
    assert pq.read_table(outdir / "atlas" / "index.parquet").to_pylist() == direct_rows
    if structural:
        assert any(row["structure_hit"] for row in direct_rows) and any(row["cluster"] for row in direct_rows)
    assert len(direct_rows) >= (4 if novelty else 8)


def test_a_drop_part_stops_on_a_queued_record_without_prediction(tmp_path):
    outdir = make_outdir(tmp_path, build=False)
    manifest = outdir / "chunks" / "d2" / "manifest.parquet"
    own = sorted((outdir / "predictions" / "d2").glob("*.parquet"))
    part = outdir / "atlas" / "parts" / "d2.outcomes.parquet"
    with pytest.raises(index.IncompleteAtlasError, match="d2/b064_0000"):
        index.write_drop_outcomes(manifest, [p for p in own if p.stem != "b064_0000"], [], part, 70, 0.7)
    assert not part.exists() and not list(part.parent.iterdir())


def make_structural_outdir(root: Path) -> Path:
    """make_outdir's atlas with structural novelty rows and clusters (write_structural_and_clusters)."""
    drops = ["d1", "d2", "d3"]
    outdir = make_outdir(root, build=False)
    write_structural_and_clusters(outdir, drops)
    structural = [p for drop in drops for p in sorted((outdir / "structural" / drop).glob("*.parquet"))]
    clusters = outdir / "clusters" / "clusters.parquet"
    build_index(outdir, drops, True, structural=structural, structural_computed=True, clusters=clusters)
    return outdir


def write_structural_and_clusters(outdir: Path, drops: list[str], seed: int = 3) -> dict[str, list[dict]]:
    """Structural rows for every ok prediction (confident ones with a hit, a TM-score and a verdict, as
    atlas.structural writes them) and a cluster table made by atlas.clusters from per-drop members: the
    confident sequences in three clusters per drop. Returns the structural rows per checksum."""
    rng = random.Random(seed)
    rows_by_checksum = {}
    member_files = []
    for drop in drops:
        members = []
        for path in sorted((outdir / "predictions" / drop).glob("*.parquet")):
            rows = []
            for prediction in pq.read_table(path).to_pylist():
                if prediction["status"] != "ok":
                    continue
                confident = (
                    prediction["mean_plddt"] >= MIN_PLDDT - 1e-6 and prediction["ptm"] >= MIN_PTM - 1e-6
                )
                tm = round(rng.uniform(0.2, 0.9), 3) if confident else None
                row = {
                    "checksum": prediction["checksum"],
                    "confident": confident,
                    "structure_hit": f"1abc_{prediction['id'][:1]}" if confident else None,
                    "structure_tm": tm,
                    "structure_aligned_length": int(tm * prediction["length"]) if confident else None,
                    "structure_candidates": 5 if confident else None,
                    "structure_verified": rng.randint(1, 5) if confident else None,
                    "structurally_novel": tm < 0.5 if confident else None,
                }
                rows.append(row)
                rows_by_checksum.setdefault(prediction["checksum"], []).append(row)
                if confident:
                    score = prediction["ptm"] * prediction["mean_plddt"] / 100
                    members.append({"checksum": prediction["checksum"], "drop": drop, "score": score})
            target = outdir / "structural" / drop / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows, schema=STRUCTURAL), target)
        for number, member in enumerate(members):
            member["cluster"] = f"{drop}-cluster{number % 3}"
        member_file = outdir / "clusters" / drop / "members.parquet"
        member_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(members, schema=CLUSTER_MEMBERS), member_file)
        member_files.append(member_file)
    clusters.clusters_table(member_files, outdir / "clusters" / "clusters.parquet")
    return rows_by_checksum


def best_structural_hit(hits: list[dict]) -> dict:
    """Of a sequence searched more than once (refolded in a later drop): a known fold first, then the best
    TM-score, as atlas.views' structural_best."""
    confident = [hit for hit in hits if hit["confident"]] or hits
    return min(
        confident, key=lambda hit: (hit["structurally_novel"], -hit["structure_tm"], hit["structure_hit"])
    )


def test_structural_columns_and_clusters_view(tmp_path):
    drops = ["d1", "d2", "d3"]
    outdir = make_outdir(tmp_path, build=False)
    structural = write_structural_and_clusters(outdir, drops)
    structural_files = [p for drop in drops for p in sorted((outdir / "structural" / drop).glob("*.parquet"))]
    counts = build_index(
        outdir,
        drops,
        True,
        structural=structural_files,
        structural_computed=True,
        clusters=outdir / "clusters" / "clusters.parquet",
    )
    rows = pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()
    assert [(r[1], r[2]) for r in expected_index(outdir, drops, True)] == [
        (r["chunk"], r["id"]) for r in rows
    ]
    table = pq.read_table(outdir / "clusters" / "clusters.parquet").to_pylist()
    cluster_of = {}  # a sequence clustered twice (refolded in a later drop): as a representative first
    for row in sorted(table, key=lambda row: (not row["representative"], row["drop"])):
        cluster_of.setdefault(row["checksum"], row)
    for row in rows:
        expected = best_structural_hit(structural[row["checksum"]])
        assert row["structure_tm"] == pytest.approx(expected["structure_tm"], abs=1e-6)
        for name in OUTCOME_STRUCTURAL_COLUMNS:
            if name != "structure_tm":
                assert row[name] == expected[name], (row["id"], name)
        assert row["structural_computed"] is True
        assert row["cluster"] == cluster_of[row["checksum"]]["cluster"]
        assert row["cluster_representative"] == cluster_of[row["checksum"]]["representative"]
    assert any(r["structurally_novel"] for r in rows) and not all(r["structurally_novel"] for r in rows)
    # per queued record: its own confidence, its sequence's best structural row
    confident_novel = sum(
        hit["confident"] and best_structural_hit(hits)["structurally_novel"]
        for hits in structural.values()
        for hit in hits
    )
    assert counts["structurally_novel"] == confident_novel
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        info = connection.execute("SELECT structural_computed, clusters_computed FROM atlas_info").fetchone()
        assert info == (True, True)
        assert connection.execute("SELECT count(*) FROM structural").fetchone()[0] == 29  # ok predictions
        clusters_view = connection.execute(
            "SELECT cluster, representative, representative_id, representative_drop, members FROM clusters"
            " ORDER BY cluster"
        ).fetchall()
        ids = {
            (drop, checksum): identifier
            for drop, checksum, identifier in connection.execute(
                "SELECT \"drop\", checksum, id FROM manifest WHERE status = 'queued'"
            ).fetchall()
        }
    representatives = sorted(
        (
            row["cluster"],
            row["checksum"],
            ids[(row["drop"], row["checksum"])],
            row["drop"],
            row["cluster_size"],
        )
        for row in table
        if row["representative"]
    )
    assert clusters_view == representatives
    assert len(clusters_view) == len({row["cluster"] for row in table}) >= 4
    assert sum(row[-1] for row in clusters_view) == len(table)
    # each representative has the best score of its cluster
    for cluster, checksum, *_ in clusters_view:
        scores = {row["checksum"]: row["score"] for row in table if row["cluster"] == cluster}
        assert scores[checksum] == max(scores.values())
    # the database reads the structural folders by glob and the cluster table by name
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        sql = dict(connection.execute("SELECT view_name, sql FROM duckdb_views()").fetchall())
    assert (
        "/structural/d1/*.parquet" in sql["structural"]
        and "/clusters/clusters.parquet" in sql["cluster_members"]
    )


def test_a_part_of_other_thresholds_or_columns_is_made_again_or_refused(tmp_path):
    """A part records its thresholds and the outcome columns' digest: `atlas index` by hand makes a part of
    another version again, and the index refuses one by name."""
    outdir = make_outdir(tmp_path, build=False)
    manifest = outdir / "chunks" / "d1" / "manifest.parquet"
    own = sorted((outdir / "predictions" / "d1").glob("*.parquet"))
    part = outdir / "atlas" / "parts" / "d1.outcomes.parquet"
    index.write_drop_outcomes(manifest, own, [], part, MIN_PLDDT, MIN_PTM)
    assert index.part_is_current(part, [manifest, *own], MIN_PLDDT, MIN_PTM)
    table = pq.read_table(part)
    older = {**table.schema.metadata, b"atlas.outcome_schema": b"0" * 16}
    pq.write_table(table.replace_schema_metadata(older), part)
    assert not index.part_is_current(part, [manifest, *own], MIN_PLDDT, MIN_PTM)
    with pytest.raises(
        ValueError, match="d1.outcomes.parquet was written with other thresholds or by another"
    ):
        build_index(outdir, ["d1"], False, outcome_parts=[part])
    index.write_drop_outcomes(manifest, own, [], part, MIN_PLDDT, MIN_PTM)  # made again: accepted
    assert build_index(outdir, ["d1"], False, outcome_parts=[part])["queued"] == len(
        [row for row in pq.read_table(manifest).to_pylist() if row["status"] == "queued"]
    )
    with pytest.raises(ValueError, match="d1.outcomes.parquet"):
        index.check_parts([part], MIN_PLDDT + 5, MIN_PTM)  # other thresholds
