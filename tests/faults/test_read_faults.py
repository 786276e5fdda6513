"""Faults on the read side (issue 10 rows 3 and 7): SQL that writes or reads outside the atlas, and a kill or
a query while the index is rebuilt."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the shared outdir builder
from test_index import MIN_PLDDT, MIN_PTM, make_outdir, stage_files  # noqa: E402

from atlas.cli import main as atlas_main  # noqa: E402
from atlas.query import run_query  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return make_outdir(tmp_path_factory.mktemp("faults"))


def query(capsys, outdir: Path, sql: str, *options: str) -> tuple[int, str, str]:
    rc = atlas_main(["query", sql, "--outdir", str(outdir), *options])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize(
    "name, sql, refused",
    [
        ("COPY over the index", "COPY (SELECT 1) TO '{outdir}/atlas/index.parquet'", "COPY statement"),
        ("EXPORT DATABASE", "EXPORT DATABASE '{outdir}/dump'", "EXPORT statement"),
        ("ATTACH a new database", "ATTACH '{outdir}/new.duckdb' AS other", "ATTACH statement"),
        ("INSTALL an extension", "INSTALL httpfs", "LOAD statement"),
        ("LOAD an extension", "LOAD json", "LOAD statement"),
        ("SET the root variable", "SET VARIABLE atlas_outdir = '/'", "SET statement"),
        ("PRAGMA", "PRAGMA enable_profiling", "PRAGMA statement"),
        ("two statements", "SELECT 1; COPY (SELECT 1) TO '{outdir}/x.csv'", "2 statements"),
        ("read_csv outside the atlas", "SELECT * FROM read_csv('/etc/passwd')", '"/etc/passwd"'),
        ("read_text through ..", "SELECT * FROM read_text('{outdir}/../../../etc/passwd')", "etc/passwd"),
        ("glob outside the atlas", "SELECT * FROM glob('/etc/*')", '"/etc/*"'),
        ("a URL", "SELECT * FROM read_csv('https://example.com/x.csv')", "https://example.com"),
    ],
)
def test_query_refuses_writes_and_outside_files(outdir, capsys, fault_case, name, sql, refused):
    case = fault_case(f"read #3 atlas query: {name}", expected="refused, naming it; atlas unchanged")
    files = {path: path.read_bytes() for path in (outdir / "atlas").glob("*") if path.is_file()}
    rc, out, err = query(capsys, outdir, sql.format(outdir=outdir))
    unchanged = files == {path: path.read_bytes() for path in (outdir / "atlas").glob("*") if path.is_file()}
    new_files = [
        p.name for p in outdir.iterdir() if p.name not in ("atlas", "chunks", "predictions", "novelty")
    ]
    case.observed = f"exit {rc}: {err.strip()[:90]!r}; atlas unchanged: {unchanged}; new files: {new_files}"
    assert rc == 1 and out == "" and "refused" in err and refused in err
    assert unchanged and not new_files


def test_reading_inside_the_atlas_still_works(outdir, capsys, fault_case):
    case = fault_case("read #3 atlas query: read_parquet inside the outdir", expected="allowed")
    sql = f"SELECT count(*) AS n FROM read_parquet('{outdir}/predictions/*/*.parquet')"
    rc, out, err = query(capsys, outdir, sql, "--format", "csv")
    case.observed = f"exit {rc}, {out.split()[-1] if out else err}"
    assert rc == 0 and out.split()[-1] == "31"


def test_export_predicate_cannot_read_outside(outdir, tmp_path, capsys, fault_case):
    case = fault_case("read #3 atlas export --where read_csv('/etc/passwd')", expected="refused")
    where = "id IN (SELECT column0 FROM read_csv('/etc/passwd', header = false))"
    rc = atlas_main(["export", "--where", where, "--out", str(tmp_path / "x"), "--outdir", str(outdir)])
    err = capsys.readouterr().err
    case.observed = f"exit {rc}: {err.strip()[:90]!r}"
    assert rc == 1 and "/etc/passwd" in err


BUILD = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_index import build_index
outdir = Path({outdir!r})
for _ in range(int(sys.argv[1])):
    for output in (outdir / "atlas" / "staged").glob("*"):  # as Snakemake does before running the job
        output.unlink()
    build_index(outdir, ["d1", "d2", "d3"], True)
    print("built", flush=True)
"""


def _build_process(outdir: Path, rounds: int) -> subprocess.Popen:
    code = BUILD.format(tests=str(REPOSITORY / "tests"), outdir=str(outdir))
    return subprocess.Popen(
        [sys.executable, "-c", code, str(rounds)],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _atlas_rows(outdir: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(outdir / "atlas" / "index.parquet").num_rows


@pytest.mark.slow
def test_kill_9_during_the_index_build_leaves_the_previous_atlas(tmp_path, capsys, fault_case):
    case = fault_case("read #7 kill -9 during the index build", expected="previous atlas whole, queryable")
    outdir = make_outdir(tmp_path)
    rows = _atlas_rows(outdir)
    observed = []
    for delay in (0.2, 0.4, 0.6, 0.8, 1.0, 1.3):
        process = _build_process(outdir, 1)
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        rc, out, err = query(capsys, outdir, "SELECT count(*) AS n FROM atlas", "--format", "csv")
        observed.append(f"{delay}s: exit {rc} n={out.split()[-1] if rc == 0 else err.strip()[:60]}")
        assert rc == 0 and int(out.split()[-1]) == rows, observed
    case.observed = "; ".join(observed)
    assert (outdir / "atlas" / "atlas.duckdb").is_file() and (outdir / "atlas" / "index.parquet").is_file()
    # and a rebuild after the kills cleans up and publishes
    process = _build_process(outdir, 1)
    assert process.wait() == 0, process.stderr.read()
    assert not list((outdir / "atlas").glob(".*tmp*"))


@pytest.mark.slow
def test_queries_during_rebuilds_always_see_an_atlas(tmp_path, fault_case):
    case = fault_case("read #7 atlas query while the index rebuilds", expected="every query answers")
    outdir = make_outdir(tmp_path)
    rows = _atlas_rows(outdir)
    process = _build_process(outdir, 6)
    answers, errors = [], []

    def ask() -> None:
        while process.poll() is None:
            try:
                answers.append(run_query_count(outdir))
            except Exception as error:  # noqa: BLE001 - every failure is what this test counts
                errors.append(repr(error))

    reader = threading.Thread(target=ask)
    reader.start()
    process.wait()
    reader.join()
    case.observed = f"{len(answers)} queries, {len(errors)} errors {errors[:1]}; builds: {process.returncode}"
    assert process.returncode == 0 and answers and not errors
    assert set(answers) == {rows}


def run_query_count(outdir: Path) -> int:
    target = outdir.parent / f"count-{threading.get_ident()}.csv"
    run_query(outdir, "SELECT count(*) AS n FROM atlas", "csv", str(target))
    return int(target.read_text().split()[-1])


def test_stage_files_are_the_declared_inputs(tmp_path):
    """The fault tests rebuild from the same file lists the workflow declares."""
    outdir = make_outdir(tmp_path, build=False)
    files = stage_files(outdir, ["d1"], True)
    assert [path.name for path in files["predictions"]] == ["b064_0000.parquet", "b128_0000.parquet"]
    assert MIN_PLDDT and MIN_PTM
