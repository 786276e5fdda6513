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
"""

from __future__ import annotations

import re

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
