"""Realistic ESMFold outputs without the network, for the scale rehearsal (see sitecustomize.py).

Coordinates: a 1,280-residue backbone built once (NeRF, ideal bond geometry) from the real backbone
torsions of the three ESMFold predictions in tests/data, cycled; each residue's side chain copied from a real
residue of the same type in those predictions, placed on the residue's N-CA-C frame. Confidences: the real
per-residue pLDDT profile of those predictions, cycled and shifted per sequence by an offset drawn from its
checksum (so about a third of the sequences pass the default thresholds, as in the ESM Atlas), pTM and max
PAE following it.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import gemmi
import numpy as np

from atlas.structure import ATOM37, ONE_TO_THREE

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
MAX_LENGTH = 1280
BOND = {"N-CA": 1.458, "CA-C": 1.525, "C-N": 1.329, "C-O": 1.231}
ANGLE = {"N-CA-C": 111.2, "CA-C-N": 116.2, "C-N-CA": 121.7, "CA-C-O": 120.5}
THREE_TO_ONE = {three: one for one, three in ONE_TO_THREE.items()}


def _place(a, b, c, bond, angle, torsion):
    """NeRF: the atom at `bond` from c, `angle` (degrees) b-c-new, `torsion` (degrees) a-b-c-new."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    local = np.array(
        [
            -bond * np.cos(angle),
            bond * np.sin(angle) * np.cos(torsion),
            bond * np.sin(angle) * np.sin(torsion),
        ]
    )
    frame = np.stack([bc, np.cross(normal, bc), normal], axis=1)
    return c + frame @ local


def _frame(n, ca, c):
    """Rotation (columns: orthonormal axes) and origin of a residue's N-CA-C frame."""
    x = (c - ca) / np.linalg.norm(c - ca)
    y = n - ca - np.dot(n - ca, x) * x
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)], axis=1), ca


@cache
def _real():
    """Torsions, pLDDT and side chains (in local frames) of the real ESMFold predictions."""
    torsions, plddt, side_chains = [], [], {}
    for path in sorted(DATA.glob("*.pdb")):
        chain = gemmi.read_pdb_string(path.read_text())[0][0]
        residues = list(chain)
        for i, residue in enumerate(residues):
            plddt.append(residue["CA"][0].b_iso)
            n, ca, c = (np.array(residue[name][0].pos.tolist()) for name in ("N", "CA", "C"))
            rotation, origin = _frame(n, ca, c)
            atoms = {a.name: rotation.T @ (np.array(a.pos.tolist()) - origin) for a in residue}
            side_chains.setdefault(THREE_TO_ONE[residue.name], atoms)
            if 0 < i < len(residues) - 1:
                phi, psi = gemmi.calculate_phi_psi(residues[i - 1], residue, residues[i + 1])
                omega = gemmi.calculate_omega(residue, residues[i + 1])
                torsions.append((np.degrees(phi), np.degrees(psi), np.degrees(omega)))
    return torsions, np.array(plddt, dtype=np.float32), side_chains


@cache
def _backbone():
    """N, CA, C frames of a MAX_LENGTH-residue chain with the real torsions, cycled."""
    torsions, _, _ = _real()
    n, ca = np.zeros(3), np.array([BOND["N-CA"], 0.0, 0.0])
    c = _place(np.array([0.0, 1.0, 0.0]), n, ca, BOND["CA-C"], ANGLE["N-CA-C"], 0.0)
    atoms = [(n, ca, c)]
    for i in range(1, MAX_LENGTH):
        phi, psi, omega = torsions[i % len(torsions)]
        n_prev, ca_prev, c_prev = atoms[-1]
        n = _place(n_prev, ca_prev, c_prev, BOND["C-N"], ANGLE["CA-C-N"], psi)
        ca = _place(ca_prev, c_prev, n, BOND["N-CA"], ANGLE["C-N-CA"], omega)
        c = _place(c_prev, n, ca, BOND["CA-C"], ANGLE["N-CA-C"], phi)
        atoms.append((n, ca, c))
    rotations, origins = zip(*(_frame(*frame) for frame in atoms), strict=True)
    return np.stack(rotations), np.stack(origins)


@cache
def _templates():
    """atom37 coordinates (local frame) and mask of each residue type's real side chain."""
    _, _, side_chains = _real()
    index = {name: i for i, name in enumerate(ATOM37)}
    templates = {}
    for letter, atoms in side_chains.items():
        coordinates, mask = np.zeros((37, 3)), np.zeros(37, dtype=bool)
        for name, xyz in atoms.items():
            coordinates[index[name]], mask[index[name]] = xyz, True
        templates[letter] = (coordinates, mask)
    return templates


def predict(sequence: str, checksum: str) -> dict:
    """One sequence's outputs, as Folder._forward returns them."""
    rotations, origins = _backbone()
    templates = _templates()
    length = len(sequence)
    local = np.stack([templates.get(letter, templates["G"])[0] for letter in sequence])
    mask = np.stack([templates.get(letter, templates["G"])[1] for letter in sequence])
    positions = np.einsum("lij,laj->lai", rotations[:length], local) + origins[:length, None, :]
    positions[~mask] = 0.0
    _, profile, _ = _real()
    seed = int.from_bytes(hashlib.md5(checksum.encode()).digest()[:4], "little")
    offset = (seed % 6001) / 100.0 - 40.0  # -40 .. +20: a third of sequences above 70
    start = seed % len(profile)
    plddt = np.clip(np.resize(np.roll(profile, -start), length) + offset, 1.0, 99.0).astype(np.float32)
    ptm = float(np.clip(plddt.mean() / 100.0 + ((seed >> 16) % 21 - 10) / 100.0, 0.05, 0.98))
    return {
        "positions": positions,
        "atom_mask": mask,
        "plddt": plddt,
        "ptm": ptm,
        "max_pae": 31.75 * (1 - ptm),
    }


def forward(self, batch, chunk_size):
    """Replaces atlas.fold.Folder._forward: same inputs, same outputs, no network."""
    results = [predict(entry.sequence.upper(), entry.checksum) for entry in batch]
    self.stats.forwards += 1
    self.stats.padded += len(batch) * max(len(entry.sequence) for entry in batch)
    self.stats.real += sum(len(entry.sequence) for entry in batch)
    return results
