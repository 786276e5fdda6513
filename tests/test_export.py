"""atlas export: every format read back by its own reader (gemmi, Biopython, foldcomp, pyarrow), the --where
columns of the atlas view, safe names; over the outdir of tests/test_index.py's make_outdir (real mmCIF)."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import duckdb
import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from Bio import SeqIO
from Bio.PDB import PDBParser
from Bio.SeqUtils.CheckSum import crc64 as biopython_crc64
from test_index import make_outdir, make_structural_outdir

from atlas import export
from atlas.cli import main as atlas_main
from atlas.fasta import read_fasta
from atlas.structure import STRUCTURE_COLUMNS, render_mmcif


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    return make_outdir(tmp_path_factory.mktemp("atlas"))


def run(capsys, *argv):
    rc = atlas_main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def index_rows(outdir: Path) -> list[dict]:
    return pq.read_table(outdir / "atlas" / "index.parquet").to_pylist()


def selected(outdir: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(outdir / "atlas" / "atlas.duckdb"), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def checksum_of(text: str) -> str:
    return text.rstrip("\n").rsplit("# checksum ", 1)[1]


def ca_coordinates(structure) -> np.ndarray:
    return np.array([[atom.pos.x, atom.pos.y, atom.pos.z] for atom in _atoms(structure) if atom.name == "CA"])


def _atoms(structure):
    for residue in structure[0][0]:
        yield from residue


def stored_mmcif(outdir) -> dict[str, str]:
    """id -> the mmCIF of each ok prediction, rendered from its stored structure."""
    columns = ", ".join(STRUCTURE_COLUMNS)
    rows = selected(outdir, f"SELECT {columns} FROM predictions WHERE status = 'ok'")
    return {row[0]: render_mmcif(dict(zip(STRUCTURE_COLUMNS, row, strict=True))) for row in rows}


def test_export_atlas_rows_with_hostile_ids(outdir, tmp_path, capsys):
    out = tmp_path / "sandbox" / "deep" / "structures"
    rc, stdout, _ = run(capsys, "export", "--out", str(out), "--outdir", str(outdir))
    rows = index_rows(outdir)
    assert rc == 0 and f"wrote {len(rows)} structures (cif)" in stdout
    files = sorted(out.iterdir())
    assert len(files) == len(rows) and all(path.suffix == ".cif" for path in files)
    assert {checksum_of(path.read_text()) for path in files} == {r["checksum"] for r in rows}
    everything = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert all(path.parent == out for path in everything), "a file escaped the output folder"
    for path in files:
        assert path.name[0] not in ".-" and len(path.name) <= 120
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in path.name)
        structure = gemmi.read_structure(str(path))  # gemmi reads what it was given
        assert len(structure[0][0]) > 10


def test_export_where_collisions_and_gzip(outdir, tmp_path, capsys):
    out = tmp_path / "gz"
    where = "mean_plddt >= 80 OR id IN ('a b', 'a/b', 'a_b', 'A_B')"
    rc, stdout, _ = run(
        capsys, "export", "--where", where, "--out", str(out), "--format", "cif.gz", "--outdir", str(outdir)
    )
    chosen = selected(outdir, f"SELECT id, checksum FROM predictions WHERE status = 'ok' AND ({where})")
    assert rc == 0 and f"wrote {len(chosen)} structures" in stdout
    files = sorted(out.iterdir())
    assert len(files) == len(chosen) and all(path.name.endswith(".cif.gz") for path in files)
    texts = [gzip.decompress(path.read_bytes()).decode() for path in files]
    assert sorted(checksum_of(text) for text in texts) == sorted(checksum for _, checksum in chosen)
    assert all(len(gemmi.read_structure(str(path))[0][0]) > 10 for path in files[:3])  # gemmi reads .gz
    names = [path.name for path in files]
    assert len({name.casefold() for name in names}) == len(names)
    # "a b", "a/b", "a_b" and "A_B" all sanitise to a_b (case-insensitively): none keeps the plain name
    assert not {"a_b.cif.gz", "A_B.cif.gz"} & set(names)
    assert sum(name.casefold().startswith("a_b_") for name in names) == 4
    again = tmp_path / "again"  # same selection, same names
    argv = ["export", "--where", where, "--out", str(again), "--format", "cif.gz", "--outdir", str(outdir)]
    assert atlas_main(argv) == 0
    assert sorted(path.name for path in again.iterdir()) == names


def test_where_reaches_the_atlas_view_columns_and_the_predictions_columns(outdir, tmp_path, capsys):
    # `novel` and `identity` are novelty columns (a binder error before), `sequence` a predictions column
    where = "novel AND (identity IS NULL OR identity < 0.9) AND length(sequence) > 40 AND NOT in_atlas"
    rc, stdout, err = run(
        capsys, "export", "--where", where, "--out", str(tmp_path / "n"), "--outdir", str(outdir)
    )
    expected = selected(
        outdir,
        """SELECT p.checksum FROM predictions p
        WHERE p.status = 'ok' AND length(p.sequence) > 40
        AND p.checksum IN (SELECT checksum FROM novelty GROUP BY checksum
            HAVING bool_and(novel) AND bool_and(identity IS NULL OR identity < 0.9))
        AND NOT EXISTS (SELECT 1 FROM atlas a WHERE a.id = p.id AND a."drop" = p."drop")""",
    )
    assert rc == 0, err
    texts = [path.read_text() for path in (tmp_path / "n").iterdir()]
    assert expected and sorted(checksum_of(text) for text in texts) == sorted(row[0] for row in expected)


def test_pdb_round_trip_through_biopython(outdir, tmp_path, capsys):
    rc, _, err = run(
        capsys, "export", "--format", "pdb", "--out", str(tmp_path / "pdb"), "--outdir", str(outdir)
    )
    assert rc == 0, err
    rows = {r["id"]: r for r in index_rows(outdir)}
    files = sorted((tmp_path / "pdb").iterdir())
    assert len(files) == len(rows) and all(path.suffix == ".pdb" for path in files)
    mmcif = stored_mmcif(outdir)["seq0"]
    original = gemmi.make_structure_from_block(gemmi.cif.read_string(mmcif).sole_block())
    parsed = PDBParser(QUIET=True).get_structure("seq0", str(tmp_path / "pdb" / "seq0.pdb"))
    atoms = list(parsed.get_atoms())
    assert len(atoms) == sum(1 for _ in _atoms(original))
    coordinates = np.array([atom.coord for atom in atoms if atom.get_id() == "CA"])
    assert np.allclose(coordinates, ca_coordinates(original), atol=1e-3)
    bfactors = [atom.bfactor for atom in atoms]
    assert bfactors == pytest.approx([atom.b_iso for atom in _atoms(original)], abs=0.01)


def test_foldcomp_database_round_trip(outdir, tmp_path, capsys):
    import foldcomp

    database = tmp_path / "db" / "atlas_fcz"
    rc, stdout, err = run(
        capsys, "export", "--format", "foldcomp", "--out", str(database), "--outdir", str(outdir)
    )
    rows = index_rows(outdir)
    assert rc == 0 and f"wrote {len(rows)} structures (foldcomp)" in stdout, err
    mmcif = stored_mmcif(outdir)
    names = export.assign_names([(r["id"], r["checksum"], r["drop"], r["chunk"]) for r in rows])
    by_name = {name: key[0] for key, name in names.items()}
    read = {}
    with foldcomp.open(str(database)) as db:
        for name, pdb_text in db:
            read[name] = pdb_text
    assert set(read) == set(by_name)
    for name, pdb_text in read.items():
        original = gemmi.make_structure_from_block(gemmi.cif.read_string(mmcif[by_name[name]]).sole_block())
        decoded = gemmi.read_pdb_string(pdb_text)
        # Foldcomp is lossy by design: backbone within a few tenths of an Angstrom
        assert np.abs(ca_coordinates(decoded) - ca_coordinates(original)).max() < 0.5
    with foldcomp.open(str(database), ids=["seq0"]) as db:  # lookup by name
        assert [name for name, _ in db] == ["seq0"]


def test_fasta_round_trip_through_biopython(outdir, tmp_path, capsys):
    path = tmp_path / "out" / "selected.fasta"
    where = "mean_plddt >= 60"
    rc, stdout, err = run(
        capsys, "export", "--format", "fasta", "--where", where, "--out", str(path), "--outdir", str(outdir)
    )
    assert rc == 0, err
    expected = selected(outdir, f"SELECT id, sequence FROM predictions WHERE status = 'ok' AND ({where})")
    records = list(SeqIO.parse(str(path), "fasta"))
    assert f"wrote {len(expected)} sequences" in stdout
    # Biopython's id stops at the first space: compare the whole header ("a b" is an id here)
    assert sorted((r.description, str(r.seq)) for r in records) == sorted(expected)
    assert all(len(line) <= 60 for line in path.read_text().splitlines() if not line.startswith(">"))


def test_metadata_in_the_esm_atlas_layout(outdir, tmp_path, capsys):
    path = tmp_path / "metadata.parquet"
    rc, _, err = run(
        capsys,
        "export",
        "--format",
        "metadata",
        "--where",
        "true",
        "--out",
        str(path),
        "--outdir",
        str(outdir),
    )
    assert rc == 0, err
    table = pq.read_table(path)
    assert table.column_names == [
        "id", "ptm", "plddt", "num_conf", "len", "is_fragment", "sequenceChecksum", "esmfold_version",
        "atlas_version", "sequence_dbs",
    ]  # fmt: skip
    rows = {r["id"]: r for r in table.to_pylist()}
    predictions = selected(
        outdir,
        "SELECT id, sequence, mean_plddt, ptm, num_conf, length, model, drop FROM predictions "
        "WHERE status = 'ok'",
    )
    assert set(rows) == {p[0] for p in predictions}
    for identifier, sequence, mean_plddt, ptm, num_conf, length, model, drop in predictions:
        row = rows[identifier]
        assert row["sequenceChecksum"] == biopython_crc64(sequence).removeprefix("CRC-")
        assert row["plddt"] == pytest.approx(mean_plddt / 100, abs=1e-6) and 0 <= row["plddt"] <= 1
        assert (row["ptm"], row["num_conf"], row["len"]) == (pytest.approx(ptm), num_conf, length)
        assert (row["esmfold_version"], row["atlas_version"]) == (model, drop)
        assert row["is_fragment"] is None  # this manifest has no header information
    # seq4 and seq5 of d1 are listed again (as duplicates) by d2: the drops that hold the sequence
    assert rows["seq4"]["sequence_dbs"] == "d1,d2" and rows["seq14"]["sequence_dbs"] == "d1"
    assert rows["seq21"]["sequence_dbs"] == "d2,d3"
    # a sequence folded in d1 ("a/b") and again in d2: first appeared in d1, held by both
    assert (rows["a/b"]["atlas_version"], rows["a/b"]["sequence_dbs"]) == ("d1", "d1,d2")


def test_bad_predicate_empty_selection_and_file_formats_need_a_file(outdir, tmp_path, capsys):
    rc, _, err = run(
        capsys, "export", "--where", "nonexistent > 1", "--out", str(tmp_path / "x"), "--outdir", str(outdir)
    )
    assert rc == 1 and "nonexistent" in err and "Traceback" not in err
    rc, stdout, _ = run(
        capsys, "export", "--where", "false", "--out", str(tmp_path / "y"), "--outdir", str(outdir)
    )
    assert rc == 0 and "wrote 0 structures" in stdout
    (tmp_path / "folder").mkdir()
    rc, _, err = run(
        capsys, "export", "--format", "fasta", "--out", str(tmp_path / "folder"), "--outdir", str(outdir)
    )
    assert rc == 1 and "is a folder" in err


def test_crc64_equals_biopython_on_real_uniprot_records(test_data):
    records = list(read_fasta(test_data / "UP000000625_83333.fasta"))[:500]
    assert len(records) == 500
    for record in records:
        assert "CRC-" + export.crc64(record.sequence) == biopython_crc64(record.sequence)
    assert export.normalise_crc64("CRC-00000000AAAAAAAA") == "00000000AAAAAAAA"


def test_safe_name():
    assert export.safe_name("../../x") == "_.._x"
    assert export.safe_name("a/b") == export.safe_name("a b") == "a_b"
    assert export.safe_name("é") == "e"
    assert export.safe_name("..") == export.safe_name("") == export.safe_name("日本") == "structure"
    assert export.safe_name("-rf") == "rf"
    assert len(export.safe_name("x" * 1000)) == export.MAX_NAME


def test_assign_names_is_deterministic_and_unique():
    keys = [
        (name, f"{i:032x}", "d1", "c0") for i, name in enumerate(["a/b", "a b", "a_b", "A_B", "x", "y", "é"])
    ]
    keys.append(("a_b_" + f"{0:032x}"[:10], "f" * 32, "d1", "c0"))  # an id equal to a suffixed name
    keys.append(("x", "e" * 32, "d2", "c0"))  # the same id in another drop, another sequence
    names = export.assign_names(keys)
    assert len({name.casefold() for name in names.values()}) == len(keys)
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    assert export.assign_names(shuffled) == names
    assert names[("y", f"{5:032x}", "d1", "c0")] == "y"
    assert names[("é", f"{6:032x}", "d1", "c0")] == "e"


@pytest.fixture(scope="module")
def headed(tmp_path_factory):
    """An outdir whose manifests' header columns (description, crc64, is_fragment, header_fields) are set
    to known values here: the export must use them."""
    outdir = make_outdir(tmp_path_factory.mktemp("headed"))
    for path in sorted((outdir / "chunks").glob("*/manifest.parquet")):
        table = pq.read_table(path)
        rows = table.to_pylist()
        sequences = {}
        for predictions in (outdir / "predictions").glob("*/*.parquet"):
            sequences.update(
                zip(
                    *pq.read_table(predictions, columns=["checksum", "sequence"]).to_pydict().values(),
                    strict=True,
                )
            )
        extra = {
            "description": [f"protein {r['id']} FL={i % 2}" for i, r in enumerate(rows)],
            "crc64": [
                biopython_crc64(sequences[r["checksum"]]) if r["checksum"] in sequences else None
                for r in rows
            ],
            "is_fragment": [i % 2 == 0 for i in range(len(rows))],
            "header_fields": pa.array(
                [[("FL", str(i % 2))] for i in range(len(rows))], pa.map_(pa.string(), pa.string())
            ),
        }
        for name, values in extra.items():
            column = values if isinstance(values, pa.Array) else pa.array(values)
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)
        pq.write_table(table, path)
    return outdir


def test_header_columns_of_the_manifest_reach_where_fasta_and_metadata(headed, tmp_path, capsys):
    manifest = {
        r["id"]: r
        for path in (headed / "chunks").glob("*/manifest.parquet")
        for r in pq.read_table(path).to_pylist()
        if r["status"] == "queued"
    }
    path = tmp_path / "fragments.fasta"
    where = "is_fragment AND header_fields['FL'] = '0'"
    argv = ["export", "--format", "fasta", "--where", where, "--out", str(path), "--outdir", str(headed)]
    rc, _, err = run(capsys, *argv)
    assert rc == 0, err
    records = list(SeqIO.parse(str(path), "fasta"))
    ok = {p[0] for p in selected(headed, "SELECT id FROM predictions WHERE status = 'ok'")}
    expected = {
        i for i, r in manifest.items() if i in ok and r["is_fragment"] and r["header_fields"] == [("FL", "0")]
    }
    assert {r.description.split(" protein ")[0] for r in records} == expected and expected
    assert all(r.description.endswith("FL=0") for r in records)  # >id description
    out = tmp_path / "metadata.parquet"
    rc, _, err = run(
        capsys,
        "export",
        "--format",
        "metadata",
        "--where",
        "true",
        "--out",
        str(out),
        "--outdir",
        str(headed),
    )
    assert rc == 0, err
    for row in pq.read_table(out).to_pylist():
        assert row["is_fragment"] is manifest[row["id"]]["is_fragment"]
        assert row["sequenceChecksum"] == manifest[row["id"]]["crc64"].removeprefix("CRC-")


def test_export_by_id_reads_through_the_lookups_and_equals_where(outdir, tmp_path, capsys):
    """--id gives what --where "id IN (...)" gives (structures, metadata with every holding drop), for ids
    in the atlas and not, hostile ids included; an id the atlas does not know selects nothing."""
    in_atlas = [row["id"] for row in index_rows(outdir)][:2]
    others = [row[0] for row in selected(outdir, "SELECT id FROM predictions WHERE status = 'ok'")]
    outside = [identifier for identifier in others if identifier not in in_atlas][:1]
    ids = [identifier for identifier in dict.fromkeys([*in_atlas, *outside, "a b"]) if identifier in others]
    listed = ", ".join("'" + identifier.replace("'", "''") + "'" for identifier in ids)
    outputs = {}
    for how, arguments in (
        ("id", [argument for identifier in ids for argument in ("--id", identifier)]),
        ("where", ["--where", f"id IN ({listed})"]),
    ):
        for fmt, out in (("cif", tmp_path / how), ("metadata", tmp_path / f"{how}.parquet")):
            rc, stdout, err = run(
                capsys, "export", *arguments, "--format", fmt, "--out", str(out), "--outdir", str(outdir)
            )
            assert rc == 0, err
        files = sorted((tmp_path / how).iterdir())
        outputs[how] = (
            {path.name: path.read_bytes() for path in files},
            pq.read_table(tmp_path / f"{how}.parquet").sort_by("id").to_pylist(),
        )
    assert len(outputs["id"][0]) == len(ids) >= 3
    assert outputs["id"] == outputs["where"]
    rc, stdout, _ = run(
        capsys, "export", "--id", "no-such-id", "--out", str(tmp_path / "none"), "--outdir", str(outdir)
    )
    assert rc == 0 and "wrote 0 structures" in stdout


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """test_index's atlas with structural novelty rows and clusters."""
    return make_structural_outdir(tmp_path_factory.mktemp("clustered"))


def test_representatives_export_and_structural_columns(clustered, tmp_path, capsys):
    outdir = clustered
    representatives = dict(
        selected(
            outdir,
            "SELECT representative_id, representative FROM clusters WHERE representative_id IS NOT NULL",
        )
    )
    table = pq.read_table(outdir / "clusters" / "clusters.parquet").to_pylist()
    assert len(representatives) == len({row["cluster"] for row in table}) >= 4
    rc, out, _ = run(capsys, "export", "--outdir", str(outdir), "--representatives", "--format", "fasta",
                     "--out", str(tmp_path / "representatives.fasta"))  # fmt: skip
    assert rc == 0 and f"wrote {len(representatives)} sequences" in out
    records = {record.id: record for record in SeqIO.parse(tmp_path / "representatives.fasta", "fasta")}
    assert set(records) == set(representatives)
    hits = dict(selected(outdir, "SELECT checksum, structure_hit FROM structural_best"))
    for identifier, record in records.items():
        assert f"structure_hit={hits[representatives[identifier]]} structure_tm=" in record.description
    rc, out, _ = run(capsys, "export", "--outdir", str(outdir), "--representatives", "--format", "cif",
                     "--out", str(tmp_path / "cif"))  # fmt: skip
    assert rc == 0 and len(list((tmp_path / "cif").glob("*.cif"))) == len(representatives)
    # --where and-ed with --representatives; the structural columns hold outside the index too
    rc, out, _ = run(capsys, "export", "--outdir", str(outdir), "--representatives", "--where",
                     "NOT structurally_novel", "--format", "fasta",
                     "--out", str(tmp_path / "known.fasta"))  # fmt: skip
    known = {record.id for record in SeqIO.parse(tmp_path / "known.fasta", "fasta")}
    novel_fold = dict(selected(outdir, "SELECT checksum, structurally_novel FROM structural_best"))
    assert rc == 0 and known == {i for i, c in representatives.items() if novel_fold[c] is False} != set()
    rc, out, _ = run(capsys, "export", "--outdir", str(outdir), "--where",
                     "structurally_novel AND NOT in_atlas", "--format", "metadata",
                     "--out", str(tmp_path / "outside.parquet"))  # fmt: skip
    outside = {row["id"] for row in pq.read_table(tmp_path / "outside.parquet").to_pylist()}
    in_atlas = {row["id"] for row in index_rows(outdir)}
    expected = {
        identifier
        for identifier, checksum in selected(
            outdir, "SELECT id, checksum FROM predictions WHERE status = 'ok'"
        )
        if novel_fold.get(checksum) and identifier not in in_atlas
    }
    assert rc == 0 and outside == expected != set()


def test_representatives_of_an_atlas_without_clusters_is_empty(outdir, tmp_path, capsys):
    rc, out, _ = run(capsys, "export", "--outdir", str(outdir), "--representatives", "--format", "fasta",
                     "--out", str(tmp_path / "none.fasta"))  # fmt: skip
    assert rc == 0 and "wrote 0 sequences" in out


def test_export_by_id_carries_the_structural_and_cluster_columns(clustered, tmp_path, capsys):
    """--id narrows the structural and cluster views too: the FASTA (best structural hit in the header) and
    the --where over those columns equal what --where "id IN (...)" gives."""
    ids = [row[0] for row in selected(clustered, "SELECT id FROM atlas WHERE structure_hit IS NOT NULL")][:3]
    assert ids, "the clustered atlas has structural hits"
    listed = ", ".join("'" + identifier.replace("'", "''") + "'" for identifier in ids)
    texts = []
    for arguments in (
        [argument for identifier in ids for argument in ("--id", identifier)]
        + ["--where", "structure_tm > 0"],
        ["--where", f"id IN ({listed}) AND structure_tm > 0"],
    ):
        out = tmp_path / f"{len(texts)}.fasta"
        rc, _, err = run(
            capsys, "export", *arguments, "--format", "fasta", "--out", str(out), "--outdir", str(clustered)
        )
        assert rc == 0, err
        texts.append(out.read_text())
    assert texts[0] == texts[1] and texts[0].count(">") == len(ids) and "structure_hit=" in texts[0]
