"""mmCIF writing: read back by gemmi and Biopython, same atoms as real ESMFold output, confidence metrics."""

from __future__ import annotations

import io
from pathlib import Path

import gemmi
import numpy as np
import pytest
from Bio.PDB.MMCIFParser import MMCIFParser
from transformers.models.esm.openfold_utils.residue_constants import restype_atom37_mask, restype_order_with_x

from atlas.structure import (
    ATOM37,
    FOLDCOMP,
    MAX_ROUND_TRIP_DEVIATION,
    MMCIF,
    atom37_from_pdb,
    render_mmcif,
    render_pdb,
    residue_names,
    store_structure,
    to_mmcif,
)

DATA = Path(__file__).resolve().parent / "data"  # as tests/conftest.py's TEST_DATA


def atom_mask(sequence: str) -> np.ndarray:
    """ESMFold's atom37 mask, plus the CA of unknown residues (as atlas.fold writes them)."""
    aatype = [restype_order_with_x.get(c, 20) for c in sequence]
    mask = restype_atom37_mask[aatype].astype(bool)
    mask[[i for i, a in enumerate(aatype) if a == 20], 1] = True
    return mask


def make(sequence: str, entry_id: str = "MGYP000000000001/1-20", seed: int = 0) -> tuple[str, dict]:
    rng = np.random.default_rng(seed)
    inputs = {
        "positions": rng.normal(scale=15.0, size=(len(sequence), 37, 3)),
        "mask": atom_mask(sequence),
        "plddt": rng.uniform(0, 100, len(sequence)).astype(np.float32),
    }
    text = to_mmcif(
        entry_id=entry_id,
        sequence=sequence,
        atom_positions=inputs["positions"],
        atom_mask=inputs["mask"],
        plddt=inputs["plddt"],
        model_name="tiny-seed0",
        ptm=0.4321,
        software_version="0.1.0",
    )
    return text, inputs


def read(text: str) -> gemmi.Structure:
    return gemmi.make_structure_from_block(gemmi.cif.read_string(text).sole_block())


def test_round_trip_with_gemmi():
    sequence = "MKTVXRQBERLUKSZIVOG"
    text, inputs = make(sequence)
    structure = read(text)
    assert len(structure) == 1 and [c.name for c in structure[0]] == ["A"]
    entity = structure.entities[0]
    assert entity.polymer_type == gemmi.PolymerType.PeptideL
    assert entity.full_sequence == residue_names(sequence)
    assert gemmi.one_letter_code(entity.full_sequence) == "MKTVXRQXERLXKSXIVXG"
    chain = structure[0]["A"]
    assert [r.name for r in chain] == residue_names(sequence)
    assert [r.label_seq for r in chain] == list(range(1, len(sequence) + 1))
    for i, residue in enumerate(chain):
        expected = [ATOM37[j] for j in np.nonzero(inputs["mask"][i])[0]]
        assert [a.name for a in residue] == expected
        for atom in residue:
            j = ATOM37.index(atom.name)
            assert atom.pos.x == pytest.approx(inputs["positions"][i, j, 0], abs=6e-4)
            assert atom.pos.z == pytest.approx(inputs["positions"][i, j, 2], abs=6e-4)
            assert atom.b_iso == pytest.approx(inputs["plddt"][i], abs=0.006)
            assert atom.element.name == atom.name[0]
        if residue.name == "UNK":
            assert [a.name for a in residue] == ["CA"]


def test_confidence_and_provenance_categories():
    sequence = "MKTAYIAKQRQISFVKSHFSRQ"
    text, inputs = make(sequence)
    block = gemmi.cif.read_string(text).sole_block()
    assert block.find_value("_software.version") is None  # a loop: two rows
    software = block.find("_software.", ["name", "version"])
    rows = [(row[0], row[1]) for row in software]
    assert rows == [("ESMFold", "tiny-seed0"), ("metagenomic-atlas", "0.1.0")]
    metrics = {row[0]: (row[1], row[2]) for row in block.find("_ma_qa_metric.", ["id", "type", "mode"])}
    assert metrics == {"1": ("pLDDT", "global"), "2": ("pLDDT", "local"), "3": ("pTM", "global")}
    table = block.find("_ma_qa_metric_global.", ["metric_id", "metric_value"])
    global_values = {row[0]: float(row[1]) for row in table}
    assert global_values["1"] == pytest.approx(inputs["plddt"].mean(), abs=0.006)
    assert global_values["3"] == pytest.approx(0.4321)
    local = [float(v) for v in block.find_loop("_ma_qa_metric_local.metric_value")]
    np.testing.assert_allclose(local, inputs["plddt"], atol=0.006)
    assert gemmi.cif.as_string(block.find_value("_entry.id")) == "MGYP000000000001/1-20"
    assert "ESMFold prediction of" in gemmi.cif.as_string(block.find_value("_struct.title"))


def test_biopython_reads_it():
    sequence = "MKTVXRQBERLUKSZIVOGW"
    text, inputs = make(sequence, entry_id="weird id with spaces|and|bars")
    structure = MMCIFParser(QUIET=True).get_structure("x", io.StringIO(text))
    residues = list(structure.get_residues())
    assert len(residues) == len(sequence)
    assert [r.get_resname() for r in residues] == residue_names(sequence)
    assert len(list(structure.get_atoms())) == int(inputs["mask"].sum())
    for residue, value in zip(residues, inputs["plddt"], strict=True):
        assert all(atom.get_bfactor() == pytest.approx(value, abs=0.006) for atom in residue)


def test_same_atoms_as_real_esmfold_output():
    """The atom37 mask gives exactly the atoms ESMFold's own PDB writer wrote for the same sequence."""
    pdb = gemmi.read_structure(str(DATA / "esmfold_v1_esm_readme_example.pdb"))
    chain = pdb[0][0]
    sequence = gemmi.one_letter_code([r.name for r in chain])
    text, _ = make(sequence)
    ours = read(text)[0]["A"]
    assert len(ours) == len(chain) == 65
    for theirs, mine in zip(chain, ours, strict=True):
        assert theirs.name == mine.name
        assert sorted(a.name for a in theirs) == sorted(a.name for a in mine)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes"):
        to_mmcif(
            entry_id="x",
            sequence="MKT",
            atom_positions=np.zeros((2, 37, 3)),
            atom_mask=np.ones((3, 37)),
            plddt=np.zeros(3),
            model_name="m",
        )


# ---- compact storage (Foldcomp) ----

REAL_ESMFOLD = sorted(DATA.glob("*.pdb"))


def real_prediction(path: Path) -> tuple[dict, dict]:
    """to_mmcif's arguments for a real ESMFold prediction, and the row fields that go with it."""
    text = path.read_text()
    residues = gemmi.read_pdb_string(text)[0][0]
    sequence = gemmi.one_letter_code([residue.name for residue in residues])
    positions, mask = atom37_from_pdb(text, len(sequence))
    plddt = np.array([residue["CA"][0].b_iso for residue in residues], dtype=np.float32)
    arguments = {
        "entry_id": path.stem,
        "sequence": sequence,
        "atom_positions": positions,
        "atom_mask": mask,
        "plddt": plddt,
        "model_name": "esmfold_v1",
        "ptm": 0.8,
    }
    row = {"id": path.stem, "sequence": sequence, "plddt": plddt.tolist(), "ptm": 0.8, "model": "esmfold_v1"}
    return arguments, row


def atoms(text: str) -> dict[tuple[int, str], gemmi.Position]:
    return {(i, a.name): a.pos for i, r in enumerate(read(text)[0][0]) for a in r}


@pytest.mark.parametrize("path", REAL_ESMFOLD, ids=lambda p: p.stem)
def test_real_esmfold_chains_are_stored_as_foldcomp_and_render_back(path):
    arguments, row = real_prediction(path)
    text = to_mmcif(**arguments)
    stored = store_structure(**arguments)
    assert stored.format == FOLDCOMP and stored.fallback_reason is None
    assert len(stored.data) < 25 * len(row["sequence"])  # vs ~180 bytes per residue as mmCIF
    rendered = render_mmcif({**row, "structure_format": stored.format, "structure": stored.data})
    before, after = atoms(text), atoms(rendered)
    assert before.keys() == after.keys()
    deviations = np.array([before[k].dist(after[k]) for k in before])
    assert np.sqrt((deviations**2).mean()) < 0.2 and deviations.max() <= MAX_ROUND_TRIP_DEVIATION
    chain = read(rendered)[0]["A"]
    # the exact pLDDT of the row, not Foldcomp's quantised copy
    assert [r["CA"][0].b_iso for r in chain] == pytest.approx(row["plddt"], abs=0.005)
    pdb = gemmi.read_pdb_string(
        render_pdb({**row, "structure_format": stored.format, "structure": stored.data})
    )
    assert gemmi.one_letter_code([r.name for r in pdb[0][0]]) == row["sequence"]


def test_unknown_residues_keep_their_mmcif_with_the_reason():
    sequence = "MKTVXRQERLKSIVG" * 3  # random coordinates and CA-only UNK residues
    text, inputs = make(sequence)
    stored = store_structure(
        entry_id="MGYP000000000001/1-20",
        sequence=sequence,
        atom_positions=inputs["positions"],
        atom_mask=inputs["mask"],
        plddt=inputs["plddt"],
        model_name="tiny-seed0",
        ptm=0.4321,
        software_version="0.1.0",
    )
    assert stored.format == MMCIF and stored.data == text.encode()
    assert stored.fallback_reason
    row = {"id": "x", "structure_format": stored.format, "structure": stored.data}
    assert render_mmcif(row) == text


def test_plain_mmcif_kept_when_asked_for():
    arguments, _ = real_prediction(REAL_ESMFOLD[0])
    stored = store_structure(**arguments, structure_format=MMCIF)
    assert (stored.format, stored.data, stored.fallback_reason) == (
        MMCIF,
        to_mmcif(**arguments).encode(),
        None,
    )
    with pytest.raises(ValueError, match="not one of"):
        store_structure(**arguments, structure_format="pdb")


def test_foldcomp_input_is_the_pdb_gemmi_reads_at_the_format_limits():
    """The PDB text handed to Foldcomp (numpy columns, no loop per atom) reads back in gemmi with every atom,
    residue name and number, coordinates at the %8.3f limits and their rounding included; one beyond them
    keeps the chain's mmCIF, with the reason."""
    from atlas.structure import _pdb_text

    arguments, _ = real_prediction(REAL_ESMFOLD[0])
    sequence, mask = arguments["sequence"], arguments["atom_mask"]
    positions = arguments["atom_positions"].copy()
    edges = [-999.999, 9999.999, -0.5, -0.05, -9.9995, -99.9996, 0.0004, 12.3455, -123.4]
    residue, atom = np.nonzero(mask)
    for (r, a), value in zip(zip(residue[:3], atom[:3], strict=True), edges, strict=False):
        positions[r, a] = value, value, value
    positions[residue[3:6], atom[3:6]] = np.array(edges[3:6])[:, None]
    positions = np.round(positions, 3)
    chain = gemmi.read_pdb_string(_pdb_text("MGYP000000000001", sequence, positions, mask))[0][0]
    assert gemmi.one_letter_code([r.name for r in chain]) == sequence
    assert [r.seqid.num for r in chain] == list(range(1, len(sequence) + 1))
    read_back = {(r.seqid.num - 1, ATOM37.index(a.name)): a.pos.tolist() for r in chain for a in r}
    assert set(read_back) == set(zip(residue.tolist(), atom.tolist(), strict=True))
    for (r, a), xyz in read_back.items():
        assert xyz == pytest.approx(positions[r, a].tolist(), abs=5e-4)
    assert [chain[0][0].pos.x, chain[0][1].pos.y] == [-999.999, 9999.999]
    assert np.array_equal(
        atom37_from_pdb(_pdb_text("x", sequence, positions, mask), len(sequence))[0], positions
    )
    positions[0, 1, 0] = -1000.0
    stored = store_structure(**{**arguments, "atom_positions": positions})
    assert stored.format == MMCIF and "beyond the PDB format" in stored.fallback_reason
