"""atlas query / stats over a small outdir built by tests/test_index.py's make_outdir."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_index import MIN_PLDDT, MIN_PTM, example_drops, make_outdir

from atlas import query
from atlas.cli import main as atlas_main
from atlas.stats import counts_of


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return make_outdir(tmp_path_factory.mktemp("atlas"))


def run(capsys, *argv):
    rc = atlas_main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def index_rows(outdir: Path) -> list[dict]:
    return pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()


# ---------------------------------------------------------------------------------------------------- query


def test_query_formats(outdir, capsys, tmp_path):
    sql = "SELECT id, mean_plddt, novel FROM atlas ORDER BY id"
    stored = sorted((r["id"], r["mean_plddt"], r["novel"]) for r in index_rows(outdir))
    expected = [(i, query.short_float(plddt), novel) for i, plddt, novel in stored]

    rc, out, _ = run(capsys, "query", sql, "--outdir", str(outdir))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "mean_plddt", "novel"]
    assert lines[-2] == f"({len(expected)} rows)"
    assert "1 cell cut at 60 characters" in lines[-1] and "--max-cell 0" in lines[-1]
    assert "../../x" in out

    rc, out, _ = run(capsys, "query", sql, "--format", "csv", "--outdir", str(outdir))
    records = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and [(r["id"], float(r["mean_plddt"]), r["novel"] == "True") for r in records] == expected

    rc, out, _ = run(capsys, "query", sql, "--format", "json", "--outdir", str(outdir))
    assert rc == 0 and [(r["id"], r["mean_plddt"], r["novel"]) for r in json.loads(out)] == expected

    target = tmp_path / "out" / "result.parquet"
    rc, _, err = run(
        capsys, "query", sql, "--format", "parquet", "--output", str(target), "--outdir", str(outdir)
    )
    table = pq.read_table(target)
    assert rc == 0 and table.column_names == ["id", "mean_plddt", "novel"]
    assert [(r["id"], r["mean_plddt"], r["novel"]) for r in table.to_pylist()] == stored
    assert f"wrote {len(expected)} rows" in err

    target = tmp_path / "result.json"
    rc, out, _ = run(
        capsys, "query", sql, "--format", "json", "--output", str(target), "--outdir", str(outdir)
    )
    assert rc == 0 and out == "" and len(json.loads(target.read_text())) == len(expected)


def test_query_json_of_lists_nulls_and_empty_results(outdir, capsys):
    sql = "SELECT id, plddt[1:2] AS head, error, 'nan'::DOUBLE AS x FROM predictions"
    sql += " WHERE id IN ('seq3', 'seq0')"
    rc, out, _ = run(capsys, "query", sql + " ORDER BY id", "--format", "json", "--outdir", str(outdir))
    error = "RuntimeError: CUDA out of memory even at batch size 1"
    assert rc == 0 and json.loads(out) == [
        {"id": "seq0", "head": [70.0, 70.0], "error": None, "x": None},
        {"id": "seq3", "head": None, "error": error, "x": None},
    ]
    rc, out, _ = run(
        capsys, "query", "SELECT * FROM atlas WHERE false", "--format", "json", "--outdir", str(outdir)
    )
    assert rc == 0 and json.loads(out) == []
    rc, out, _ = run(capsys, "query", "SELECT 1 AS a WHERE false", "--outdir", str(outdir))
    assert rc == 0 and out.splitlines()[-1] == "(0 rows)"


def test_long_cells_whole_on_request_and_float32_noise_rounded(outdir, capsys):
    sql = "SELECT id FROM atlas WHERE length(id) > 60"
    rc, out, _ = run(capsys, "query", sql, "--max-cell", "0", "--outdir", str(outdir))
    assert rc == 0 and "x" * 300 in out and "cut" not in out
    # 0.1 stored as float32 reads back as 0.10000000149011612: printed as 0.1 in every format
    sql = "SELECT 0.1::FLOAT AS f, 0.1::DOUBLE AS d, 1/3 AS third"
    for fmt in ("json", "csv", "table"):
        rc, out, _ = run(capsys, "query", sql, "--format", fmt, "--outdir", str(outdir))
        assert rc == 0 and "0.10000000149011612" not in out and "0.1" in out, fmt
        assert "0.3333333333333333" in out, fmt  # a double keeps its digits
    rc, out, _ = run(capsys, "query", sql, "--format", "json", "--outdir", str(outdir))
    assert json.loads(out) == [{"f": 0.1, "d": 0.1, "third": 1 / 3}]


def test_version(capsys):
    import atlas

    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"atlas {atlas.__version__}"


def test_parquet_format_needs_output(outdir, capsys):
    with pytest.raises(SystemExit) as caught:
        atlas_main(["query", "SELECT 1", "--format", "parquet", "--outdir", str(outdir)])
    assert caught.value.code == 2
    assert "--output" in capsys.readouterr().err


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELEC id FROM atlas", "syntax error"),
        ("SELECT nope FROM atlas", "nope"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ],
)
def test_bad_sql_prints_duckdb_message(outdir, capsys, sql, message):
    rc, out, err = run(capsys, "query", sql, "--outdir", str(outdir))
    assert rc == 1 and out == ""
    assert err.startswith("atlas query: error:") and message in err.lower()
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t AS SELECT 1",
        "DROP VIEW atlas",
        "INSERT INTO atlas_info SELECT * FROM atlas_info",
        "UPDATE atlas_info SET min_plddt = 0",
        "CREATE OR REPLACE VIEW atlas AS SELECT 1",
    ],
)
def test_writes_are_rejected(outdir, capsys, sql):
    before = (outdir / "atlas" / "atlas.duckdb").read_bytes()
    rc, _, err = run(capsys, "query", sql, "--outdir", str(outdir))
    assert rc == 1 and "refused" in err and "read-only" in err
    assert (outdir / "atlas" / "atlas.duckdb").read_bytes() == before


def test_missing_database_is_a_clear_error(tmp_path, capsys):
    rc, _, err = run(capsys, "query", "SELECT 1", "--outdir", str(tmp_path / "nowhere"))
    assert rc == 1 and "no atlas database" in err and "Traceback" not in err


def test_default_outdir_comes_from_config_yaml(outdir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert query.default_outdir() == "results"
    (tmp_path / "config.yaml").write_text(f"drops: [x.fasta]\noutdir: {outdir}\n")
    assert query.default_outdir() == str(outdir)
    rc, out, _ = run(capsys, "query", "SELECT count(*) AS n FROM atlas", "--format", "csv")
    assert rc == 0 and out.splitlines()[1] == str(len(index_rows(outdir)))


def test_moved_outdir(outdir, tmp_path, capsys):
    moved = tmp_path / "elsewhere"
    shutil.copytree(outdir, moved)
    rc, out, _ = run(
        capsys, "query", "SELECT count(*) AS n FROM predictions", "--format", "csv", "--outdir", str(moved)
    )
    assert rc == 0 and out.splitlines()[1] == "31"


# ---------------------------------------------------------------------------------------------------- stats


def expected_counts(outdir: Path, drop: str, records: list[dict]) -> dict:
    predictions = []
    for path in sorted((outdir / "predictions" / drop).glob("*.parquet")):
        predictions += pq.read_table(path, columns=["checksum", "status", "mean_plddt", "ptm"]).to_pylist()
    novel = set()
    for path in sorted((outdir / "novelty").glob("*/*.parquet")):
        novel |= {r["checksum"] for r in pq.read_table(path).to_pylist() if r["novel"]}
    ok = [r for r in predictions if r["status"] == "ok"]
    confident = [r for r in ok if r["mean_plddt"] >= MIN_PLDDT - 1e-6 and r["ptm"] >= MIN_PTM - 1e-6]
    queued = sum(r["status"] == "queued" for r in records)
    failed = sum(r["status"] == "failed" for r in predictions)
    return {
        "records": len(records),
        "rejected": sum(r["status"] == "rejected" for r in records),
        "duplicates": sum(r["status"] == "duplicate" for r in records),
        "queued": queued,
        "folded": len(ok),
        "failed": failed,
        "pending": queued - len(ok) - failed,
        "high_confidence": len(confident),
        "novel": sum(r["checksum"] in novel for r in ok),
        "high_confidence_novel": sum(r["checksum"] in novel for r in confident),
    }


STAGE_KEYS = ("records", "rejected", "duplicates", "queued", "folded", "failed", "pending", "high_confidence")


def test_stage_counts_match(outdir):
    stats = counts_of(outdir)
    drops = example_drops()
    assert stats["drops"] == ["d1", "d2", "d3"]
    for drop, records in drops.items():
        counts = {key: stats["per_drop"][drop][key] for key in expected_counts(outdir, drop, records)}
        assert counts == expected_counts(outdir, drop, records), drop
    d1 = stats["per_drop"]["d1"]
    assert (d1["records"], d1["rejected"], d1["duplicates"], d1["queued"], d1["failed"]) == (22, 1, 1, 20, 1)
    assert stats["total"]["records"] == sum(len(records) for records in drops.values())
    for key in (*STAGE_KEYS, "novel", "high_confidence_novel"):
        assert stats["total"][key] == sum(counts[key] for counts in stats["per_drop"].values())
    # the index holds the high-confidence novel predictions, less the one folded again in d2
    assert stats["total"]["high_confidence_novel"] == len(index_rows(outdir)) + 1
    assert stats["thresholds"] == {"min_plddt": MIN_PLDDT, "min_ptm": MIN_PTM}
    assert stats["novelty_computed"] is True
    json.dumps(stats)  # the report writes it as summary.json


def test_stage_counts_midway_and_without_novelty(tmp_path):
    outdir = make_outdir(tmp_path, novelty=False, build=False)
    (outdir / "predictions" / "d2" / "b064_0000.parquet").unlink()  # d2 not folded yet
    stats = counts_of(outdir)
    assert stats["novelty_computed"] is False
    assert stats["total"]["novel"] is None and stats["total"]["high_confidence_novel"] is None
    assert stats["per_drop"]["d2"]["pending"] == stats["per_drop"]["d2"]["queued"] == 11
    assert stats["per_drop"]["d2"]["folded"] == 0


def test_stats_cli(outdir, capsys, tmp_path):
    rc, out, _ = run(capsys, "stats", "--outdir", str(outdir))
    assert rc == 0
    lines = out.splitlines()
    assert "mean_plddt >= 70" in lines[0] and "novelty computed" in lines[0]
    assert lines[2].split() == ["stage", "d1", "d2", "d3", "total"]
    records = next(line.split() for line in lines if line.startswith("input records"))
    total = sum(len(records) for records in example_drops().values())
    assert records[-1] == str(total)
    # the accounting invariant, with its numbers
    invariant = next(line for line in lines if line.startswith("records in"))
    every = [record for records in example_drops().values() for record in records]
    kinds = [r["status"] if r["status"] != "queued" else r["result"] for r in every]
    parts = [kinds.count(kind) for kind in ("ok", "failed", "duplicate", "rejected")]
    assert sum(parts) == total and all(parts)
    assert invariant == "records in {} = {} folded + {} failed + {} duplicate + {} rejected".format(
        total, *parts
    )
    rc, out, _ = run(capsys, "stats", "--outdir", str(outdir), "--json")
    assert rc == 0 and json.loads(out)["total"]["records"] == total
    rc, _, err = run(capsys, "stats", "--outdir", str(tmp_path / "empty"))
    assert rc == 1 and "run the workflow first" in err
