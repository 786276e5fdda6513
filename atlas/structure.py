"""Predicted structures as mmCIF text (written with gemmi), pLDDT in the B-factors.

What one mmCIF holds:
- one model, one chain `A` (entity 1, polypeptide(L)); `_entity_poly` / `_entity_poly_seq` give the full
  input sequence, the residues ESMFold folds as unknown (X, B, Z, U, O) as `UNK` (`(UNK)` / `X` in the one-
  letter codes);
- `_atom_site`: every atom of the atom37 mask of each residue (ESMFold's output atoms: heavy atoms, no OXT,
  no hydrogens). ESMFold's own PDB writer leaves unknown residues without atoms; here an `UNK` residue gets
  its CA, the origin of its predicted backbone frame, so every residue of the sequence is in the model and
  carries its pLDDT. Coordinates in Angstrom, 3 decimals;
- B-factors: the residue's pLDDT (0-100, the CA atom's pLDDT, as in the ESM Atlas metadata) on all of its
  atoms, the AlphaFold DB convention (ESMFold's PDB writer puts each atom's own pLDDT);
- ModelCIF-style confidence: `_ma_qa_metric` with `_ma_qa_metric_global` (mean pLDDT, pTM) and
  `_ma_qa_metric_local` (per-residue pLDDT), `_ma_model_list` / `_ma_data` naming the model;
- provenance: `_software` (ESMFold with the model name@version, and this package), `_struct.title`.

Compact storage. The predictions store each structure Foldcomp-compressed (FCZ, the format the ESM Atlas
is distributed in: torsion angles, ~13-24 bytes per residue against ~180 for mmCIF text in zstd Parquet) and
render mmCIF or PDB from it on export, with the exact per-residue pLDDT of the `plddt` column in the
B-factors. A chain is kept as mmCIF text instead when Foldcomp cannot encode it or its round trip is off:
all-atom RMSD above MAX_ROUND_TRIP_RMSD, any atom further than MAX_ROUND_TRIP_DEVIATION, or a different set
of atoms (Foldcomp rebuilds a full backbone for the CA-only `UNK` residues of this module). Real ESMFold
chains round-trip at 0.10-0.14 A all-atom RMSD (bench/structure_storage.py); the `tiny` model's random
weights may not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

import gemmi
import numpy as np

# atom37 order of ESMFold / openfold (residue_constants.atom_types)
_ATOM37_NAMES = (
    "N CA C CB O CG CG1 CG2 OG OG1 SG CD CD1 CD2 ND1 ND2 OD1 OD2 SD CE CE1 CE2 CE3 NE NE1 NE2 OE1 OE2 CH2 "
    "NH1 NH2 OH CZ CZ2 CZ3 NZ OXT"
)
ATOM37 = tuple(_ATOM37_NAMES.split())
ONE_TO_THREE = {
    "A": "ALA",
    "R": "ARG",
    "N": "ASN",
    "D": "ASP",
    "C": "CYS",
    "Q": "GLN",
    "E": "GLU",
    "G": "GLY",
    "H": "HIS",
    "I": "ILE",
    "L": "LEU",
    "K": "LYS",
    "M": "MET",
    "F": "PHE",
    "P": "PRO",
    "S": "SER",
    "T": "THR",
    "W": "TRP",
    "Y": "TYR",
    "V": "VAL",
}
UNKNOWN = "UNK"
SOFTWARE_NAME = "metagenomic-atlas"

# How a predictions row stores its structure (`structure_format` column; `structure` holds the bytes).
FOLDCOMP = "foldcomp"  # FCZ bytes
MMCIF = "mmcif"  # mmCIF text, UTF-8
STRUCTURE_FORMATS = (FOLDCOMP, MMCIF)
# The predictions columns render_mmcif / render_pdb read
STRUCTURE_COLUMNS = ("id", "sequence", "plddt", "ptm", "model", "structure_format", "structure")
# Round-trip bounds for keeping a chain as FCZ; real ESMFold output stays far below them (0.10-0.14 A RMSD,
# 0.36 A largest deviation on the PDBs of tests/data).
MAX_ROUND_TRIP_RMSD = 0.3
MAX_ROUND_TRIP_DEVIATION = 1.0


def residue_names(sequence: str) -> list[str]:
    return [ONE_TO_THREE.get(letter, UNKNOWN) for letter in sequence.upper()]


def _block_name(entry_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", entry_id).strip("_")
    return name or "prediction"


def _fmt(values: np.ndarray, spec: str) -> list[str]:
    return [format(v, spec) for v in values.tolist()]


def to_mmcif(
    *,
    entry_id: str,
    sequence: str,
    atom_positions: np.ndarray,
    atom_mask: np.ndarray,
    plddt: np.ndarray,
    model_name: str,
    ptm: float | None = None,
    software_version: str | None = None,
) -> str:
    """mmCIF text of one predicted chain.

    atom_positions: [L, 37, 3] (atom37 order), atom_mask: [L, 37] (atoms to write), plddt: [L] per
    residue, 0-100.
    """
    length = len(sequence)
    atom_positions = np.asarray(atom_positions, dtype=np.float64)
    atom_mask = np.asarray(atom_mask).astype(bool)
    plddt = np.asarray(plddt, dtype=np.float64)
    if atom_positions.shape != (length, 37, 3) or atom_mask.shape != (length, 37) or plddt.shape != (length,):
        raise ValueError(
            f"shapes do not match a {length}-residue sequence: positions {atom_positions.shape}, "
            f"mask {atom_mask.shape}, plddt {plddt.shape}"
        )
    names = residue_names(sequence)
    doc = gemmi.cif.Document()
    block = doc.add_new_block(_block_name(entry_id))
    block.set_pair("_entry.id", gemmi.cif.quote(entry_id))

    block.set_mmcif_category(
        "_struct", {"entry_id": [entry_id], "title": [f"ESMFold prediction of {entry_id}"]}
    )
    block.set_mmcif_category(
        "_software",
        {
            "pdbx_ordinal": ["1", "2"],
            "name": ["ESMFold", SOFTWARE_NAME],
            "version": [model_name, software_version],
            "type": ["package", "program"],
            "classification": ["model building", "other"],
            "description": [
                "structure prediction from a single sequence (ESM-2 language model + folding trunk)",
                "metagenomic protein structure atlas workflow",
            ],
        },
    )

    block.set_mmcif_category(
        "_entity",
        {"id": ["1"], "type": ["polymer"], "src_method": ["man"], "pdbx_description": [entry_id]},
    )
    pairs = list(zip(names, sequence.upper(), strict=True))
    one_letter = "".join(f"({UNKNOWN})" if n == UNKNOWN else s for n, s in pairs)
    one_letter_can = "".join("X" if n == UNKNOWN else s for n, s in pairs)
    block.set_mmcif_category(
        "_entity_poly",
        {
            "entity_id": ["1"],
            "type": ["polypeptide(L)"],
            "nstd_linkage": ["no"],
            "nstd_monomer": ["no"],
            "pdbx_seq_one_letter_code": [one_letter],
            "pdbx_seq_one_letter_code_can": [one_letter_can],
            "pdbx_strand_id": ["A"],
        },
    )
    numbers = [str(i) for i in range(1, length + 1)]
    block.set_mmcif_category(
        "_entity_poly_seq",
        {"entity_id": ["1"] * length, "num": numbers, "mon_id": names, "hetero": ["n"] * length},
        raw=True,
    )
    block.set_mmcif_category("_struct_asym", {"id": ["A"], "entity_id": ["1"]})

    # atoms, in residue then atom37 order
    residue_of_atom, atom_index = np.nonzero(atom_mask)
    xyz = atom_positions[residue_of_atom, atom_index]
    atom_names = [ATOM37[i] for i in atom_index.tolist()]
    elements = [name[0] for name in atom_names]
    comp = [names[r] for r in residue_of_atom.tolist()]
    seq_ids = [numbers[r] for r in residue_of_atom.tolist()]
    b_factors = _fmt(plddt[residue_of_atom], ".2f")
    n_atoms = len(atom_names)
    if n_atoms:
        block.set_mmcif_category("_atom_type", {"symbol": sorted(set(elements))}, raw=True)
    block.set_mmcif_category(
        "_atom_site",
        {
            "group_PDB": ["ATOM"] * n_atoms,
            "id": [str(i) for i in range(1, n_atoms + 1)],
            "type_symbol": elements,
            "label_atom_id": atom_names,
            "label_alt_id": ["."] * n_atoms,
            "label_comp_id": comp,
            "label_asym_id": ["A"] * n_atoms,
            "label_entity_id": ["1"] * n_atoms,
            "label_seq_id": seq_ids,
            "pdbx_PDB_ins_code": ["?"] * n_atoms,
            "Cartn_x": _fmt(xyz[:, 0], ".3f"),
            "Cartn_y": _fmt(xyz[:, 1], ".3f"),
            "Cartn_z": _fmt(xyz[:, 2], ".3f"),
            "occupancy": ["1.00"] * n_atoms,
            "B_iso_or_equiv": b_factors,
            "auth_seq_id": seq_ids,
            "auth_comp_id": comp,
            "auth_asym_id": ["A"] * n_atoms,
            "auth_atom_id": atom_names,
            "pdbx_PDB_model_num": ["1"] * n_atoms,
        },
        raw=True,
    )

    # ModelCIF-style confidence
    block.set_mmcif_category(
        "_ma_data", {"id": ["1"], "name": ["Model"], "content_type": ["model coordinates"]}
    )
    block.set_mmcif_category(
        "_ma_model_list",
        {
            "ordinal_id": ["1"],
            "model_id": ["1"],
            "model_group_id": ["1"],
            "model_name": ["ESMFold prediction"],
            "model_group_name": [model_name],
            "model_type": ["Ab initio model"],
            "data_id": ["1"],
        },
    )
    metric_ids, metric_names = ["1", "2"], ["pLDDT", "pLDDT"]
    metric_modes, metric_types = ["global", "local"], ["pLDDT", "pLDDT"]
    global_values = [format(float(plddt.mean()) if length else 0.0, ".2f")]
    global_ids = ["1"]
    if ptm is not None:
        metric_ids.append("3")
        metric_names.append("pTM")
        metric_modes.append("global")
        metric_types.append("pTM")
        global_values.append(format(float(ptm), ".4f"))
        global_ids.append("3")
    block.set_mmcif_category(
        "_ma_qa_metric", {"id": metric_ids, "name": metric_names, "mode": metric_modes, "type": metric_types}
    )
    block.set_mmcif_category(
        "_ma_qa_metric_global",
        {
            "ordinal_id": [str(i) for i in range(1, len(global_ids) + 1)],
            "model_id": ["1"] * len(global_ids),
            "metric_id": global_ids,
            "metric_value": global_values,
        },
        raw=True,
    )
    block.set_mmcif_category(
        "_ma_qa_metric_local",
        {
            "ordinal_id": numbers,
            "model_id": ["1"] * length,
            "label_asym_id": ["A"] * length,
            "label_seq_id": numbers,
            "label_comp_id": names,
            "metric_id": ["2"] * length,
            "metric_value": _fmt(plddt, ".2f"),
        },
        raw=True,
    )
    return doc.as_string(gemmi.cif.Style.Pdbx)


@dataclass(frozen=True)
class StoredStructure:
    """A structure as the predictions store it, and why it is not FCZ when it is not."""

    format: str
    data: bytes
    fallback_reason: str | None = None


# PDB ATOM records as fixed-width byte columns (numpy, no Python loop per atom: at MGnify scale the fold jobs'
# CPU side is this formatting and parsing, a few ms per chain, while the GPU waits)
_SPACE, _MINUS, _ZERO = ord(" "), ord("-"), ord("0")
_PDB_ATOM_NAMES = np.array([list(name.ljust(3).encode()) for name in ATOM37], np.uint8)
_PDB_ELEMENTS = np.array([ord(name[0]) for name in ATOM37], np.uint8)
_PDB_RESIDUE_NAMES = np.array(  # by byte of the one-letter code
    [list(ONE_TO_THREE.get(chr(code).upper(), UNKNOWN).encode()) for code in range(256)], np.uint8
)
_PDB_LINE = 79  # columns 1-78 and the newline


@functools.cache
def _decimal_texts(width: int, zeros: bool) -> np.ndarray:
    """The text of every integer below 10**width, right-aligned (leading spaces, or zeros), (10**width,
    width) bytes: formatting a column is then one lookup."""
    values = np.arange(10**width)
    powers = 10 ** np.arange(width - 1, -1, -1)
    shown = (values[:, None] >= powers) | zeros
    shown[:, -1] = True
    return np.where(shown, _ZERO + (values[:, None] // powers) % 10, _SPACE).astype(np.uint8)


def _right_aligned(values: np.ndarray, width: int, zeros: bool = False) -> np.ndarray:
    """Non-negative integers as right-aligned decimal text, (n, width) bytes; a wider one raises."""
    if len(values) and values.max() >= 10**width:
        raise ValueError(f"a number of more than {width} digits does not fit its PDB column")
    return _decimal_texts(width, zeros)[values]


def _pdb_coordinates(values: np.ndarray) -> np.ndarray:
    """Each value as PDB's %8.3f (a rounded -0.000 reads 0.000), (n, 8) bytes."""
    thousandths = np.rint(values * 1000).astype(np.int64)
    if len(values) and (thousandths.min() <= -1_000_000 or thousandths.max() >= 10_000_000):
        raise ValueError("a coordinate beyond the PDB format's -999.999 .. 9999.999")
    magnitude = np.abs(thousandths)
    whole = magnitude // 1000
    text = np.empty((len(values), 8), np.uint8)
    text[:, :4] = _right_aligned(whole, 4)
    text[:, 4] = ord(".")
    text[:, 5:] = _right_aligned(magnitude % 1000, 3, zeros=True)
    negative = np.flatnonzero(thousandths < 0)
    text[negative, 3 - (1 + (whole >= 10) + (whole >= 100))[negative]] = _MINUS
    return text


def _pdb_text(name: str, sequence: str, atom_positions: np.ndarray, atom_mask: np.ndarray) -> str:
    """Minimal PDB ATOM records of one chain (Foldcomp's input), atoms in atom37 order; a coordinate or
    residue number the format cannot hold raises ValueError."""
    residue_of_atom, atom_index = np.nonzero(atom_mask)
    xyz = atom_positions[residue_of_atom, atom_index]
    lines = np.full((len(residue_of_atom), _PDB_LINE), _SPACE, np.uint8)
    lines[:, 0:4] = np.frombuffer(b"ATOM", np.uint8)
    lines[:, 6:11] = _right_aligned(np.arange(1, len(lines) + 1) % 100000, 5)
    lines[:, 13:16] = _PDB_ATOM_NAMES[atom_index]
    lines[:, 17:20] = _PDB_RESIDUE_NAMES[np.frombuffer(sequence.encode(), np.uint8)][residue_of_atom]
    lines[:, 21] = ord("A")
    lines[:, 22:26] = _right_aligned(residue_of_atom + 1, 4)
    for axis in range(3):
        lines[:, 30 + 8 * axis : 38 + 8 * axis] = _pdb_coordinates(xyz[:, axis])
    lines[:, 54:66] = np.frombuffer(b"  1.00  0.00", np.uint8)
    lines[:, 77] = _PDB_ELEMENTS[atom_index]
    lines[:, 78] = ord("\n")
    return f"HEADER    {name[:40]}\n" + lines.tobytes().decode() + "END\n"


_PDB_RESIDUE_NUMBER = (22, np.array([1000, 100, 10, 1]))  # first column, each column's place value
_PDB_COORDINATE = (30, np.array([1_000_000, 100_000, 10_000, 1000, 0, 100, 10, 1]))  # %8.3f, in 1/1000
_PDB_ATOM_COLUMNS = 54  # up to the last coordinate


def _pdb_numbers(records: np.ndarray, field: tuple[int, np.ndarray], count: int = 1) -> np.ndarray:
    """`count` consecutive fixed-width numbers from each record's columns (right-aligned digits, spaces, a
    sign, a point), as integers: place values of the digits, negated after a '-'."""
    first, places = field
    text = records[:, first : first + count * len(places)].reshape(len(records), count, len(places))
    digits = text.astype(np.int64) - _ZERO
    value = (np.where((digits >= 0) & (digits <= 9), digits, 0) * places).sum(axis=-1)
    return np.where((text == _MINUS).any(axis=-1), -value, value)


def atom37_from_pdb(pdb: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """atom37 positions and mask from PDB ATOM records numbered 1..length, coordinates as %8.3f (as Foldcomp
    and _pdb_text write them)."""
    positions = np.zeros((length, 37, 3))
    mask = np.zeros((length, 37), dtype=bool)
    text = np.frombuffer(pdb.encode(), np.uint8)
    if not len(text):
        return positions, mask
    newlines = np.flatnonzero(text == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    ends = np.append(newlines, len(text))
    record = np.minimum(starts[:, None] + np.arange(4), len(text) - 1)
    atoms = (ends - starts >= 4) & (text[record] == np.frombuffer(b"ATOM", np.uint8)).all(axis=1)
    if not atoms.any():
        return positions, mask
    if (ends - starts)[atoms].min() < _PDB_ATOM_COLUMNS:
        raise ValueError(f"an ATOM record shorter than its {_PDB_ATOM_COLUMNS} columns of coordinates")
    records = text[starts[atoms][:, None] + np.arange(_PDB_ATOM_COLUMNS)]
    residue = _pdb_numbers(records, _PDB_RESIDUE_NUMBER).ravel() - 1
    names, inverse = np.unique(records[:, 12:16].copy().view("S4").ravel(), return_inverse=True)
    atom = np.array([_ATOM37_INDEX[name.decode().strip()] for name in names])[inverse]
    positions[residue, atom] = _pdb_numbers(records, _PDB_COORDINATE, count=3) / 1000
    mask[residue, atom] = True
    return positions, mask


_ATOM37_INDEX = {name: i for i, name in enumerate(ATOM37)}


def round_trip_error(
    fcz: bytes, atom_positions: np.ndarray, atom_mask: np.ndarray
) -> tuple[float, float] | str:
    """All-atom RMSD and largest deviation (Angstrom) of the FCZ from the coordinates, or why they differ."""
    import foldcomp

    _, pdb = foldcomp.decompress(fcz)
    positions, mask = atom37_from_pdb(pdb, len(atom_mask))
    if not np.array_equal(mask, atom_mask):
        return f"atoms differ after the round trip ({int(atom_mask.sum())} before, {int(mask.sum())} after)"
    if not mask.any():
        return "no atoms"
    deviations = np.linalg.norm(positions[mask] - atom_positions[mask], axis=1)
    return float(np.sqrt((deviations**2).mean())), float(deviations.max())


def store_structure(
    *,
    entry_id: str,
    sequence: str,
    atom_positions: np.ndarray,
    atom_mask: np.ndarray,
    plddt: np.ndarray,
    model_name: str,
    ptm: float | None = None,
    software_version: str | None = None,
    structure_format: str = FOLDCOMP,
) -> StoredStructure:
    """The bytes to store for one predicted chain (arguments as to_mmcif's): FCZ when asked for and faithful,
    else the mmCIF text."""
    if structure_format not in STRUCTURE_FORMATS:
        raise ValueError(
            f"structure format {structure_format!r} is not one of {', '.join(STRUCTURE_FORMATS)}"
        )
    atom_positions = np.round(np.asarray(atom_positions, dtype=np.float64), 3)  # what a PDB/mmCIF file holds
    atom_mask = np.asarray(atom_mask).astype(bool)

    def as_mmcif(reason: str | None = None) -> StoredStructure:
        text = to_mmcif(
            entry_id=entry_id,
            sequence=sequence,
            atom_positions=atom_positions,
            atom_mask=atom_mask,
            plddt=plddt,
            model_name=model_name,
            ptm=ptm,
            software_version=software_version,
        )
        return StoredStructure(MMCIF, text.encode(), reason)

    if structure_format == MMCIF:
        return as_mmcif()
    import foldcomp

    try:
        fcz = foldcomp.compress(
            _block_name(entry_id), _pdb_text(entry_id, sequence, atom_positions, atom_mask)
        )
    except Exception as error:  # foldcomp raises plain exceptions on chains it cannot encode
        return as_mmcif(f"Foldcomp cannot encode it: {error}")
    error = round_trip_error(fcz, atom_positions, atom_mask)
    if isinstance(error, str):
        return as_mmcif(error)
    rmsd, deviation = error
    if rmsd > MAX_ROUND_TRIP_RMSD or deviation > MAX_ROUND_TRIP_DEVIATION:
        return as_mmcif(
            f"round trip off: all-atom RMSD {rmsd:.3f} A (bound {MAX_ROUND_TRIP_RMSD}), largest deviation "
            f"{deviation:.3f} A (bound {MAX_ROUND_TRIP_DEVIATION})"
        )
    return StoredStructure(FOLDCOMP, fcz)


def render_mmcif(row: Mapping) -> str:
    """mmCIF text of a predictions row (`id`, `sequence`, `plddt`, `ptm`, `model`, `structure_format`,
    `structure`): FCZ coordinates with the row's exact pLDDT, or the stored mmCIF as it is."""
    data = row["structure"]
    if row["structure_format"] == MMCIF:
        return bytes(data).decode()
    if row["structure_format"] != FOLDCOMP:
        raise ValueError(f"unknown structure format {row['structure_format']!r} for {row['id']}")
    import foldcomp

    _, pdb = foldcomp.decompress(bytes(data))
    positions, mask = atom37_from_pdb(pdb, len(row["sequence"]))
    return to_mmcif(
        entry_id=row["id"],
        sequence=row["sequence"],
        atom_positions=positions,
        atom_mask=mask,
        plddt=np.asarray(row["plddt"], dtype=np.float64),
        model_name=row["model"],
        ptm=row["ptm"],
    )


def render_pdb(row: Mapping) -> str:
    """PDB text of a predictions row, pLDDT (0-100) in the B-factors as ESMFold writes it."""
    structure = gemmi.make_structure_from_block(gemmi.cif.read_string(render_mmcif(row)).sole_block())
    structure.setup_entities()
    return structure.make_pdb_string(gemmi.PdbWriteOptions(minimal=True))
