"""Bytes per residue and round-trip error of the stored structures, on real ESMFold predictions.

    .venv/bin/python bench/structure_storage.py [PDB ...]

For each real ESMFold PDB (default: those of tests/data), stores the chain as the fold step does
(atlas.structure.store_structure) both ways, Foldcomp and mmCIF text, each in a zstd Parquet column as the
predictions are written, and prints bytes per residue side by side with the Foldcomp round trip: all-atom
RMSD, largest atom deviation, and the pLDDT difference of Foldcomp's own B-factors (the rendered mmCIF takes
the exact pLDDT from the `plddt` column).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import gemmi
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.structure import FOLDCOMP, MMCIF, atom37_from_pdb, round_trip_error, store_structure

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def arguments(path: Path) -> dict:
    text = path.read_text()
    residues = gemmi.read_pdb_string(text)[0][0]
    sequence = gemmi.one_letter_code([residue.name for residue in residues])
    positions, mask = atom37_from_pdb(text, len(sequence))
    plddt = np.array([residue["CA"][0].b_iso for residue in residues], dtype=np.float32)
    return {
        "entry_id": path.stem,
        "sequence": sequence,
        "atom_positions": positions,
        "atom_mask": mask,
        "plddt": plddt,
        "model_name": "esmfold_v1",
        "ptm": 0.8,
    }


def parquet_bytes(values: list[bytes]) -> int:
    """Compressed size of one zstd Parquet column holding these values (footer excluded)."""
    buffer = io.BytesIO()
    table = pa.table({"structure": pa.array(values, pa.binary())})
    pq.write_table(table, buffer, compression="zstd", write_statistics=False)  # as atlas.fold writes it
    metadata = pq.ParquetFile(io.BytesIO(buffer.getvalue())).metadata
    return sum(metadata.row_group(i).column(0).total_compressed_size for i in range(metadata.num_row_groups))


def main(argv: list[str]) -> int:
    paths = [Path(p) for p in argv] or sorted(DATA.glob("*.pdb"))
    print(f"{'structure':<42} {'res':>4} {'FCZ B/res':>9} {'mmCIF B/res':>11} {'RMSD A':>7} {'max A':>6}")
    fcz_all, cif_all, residues_all = [], [], 0
    for path in paths:
        given = arguments(path)
        fcz = store_structure(**given, structure_format=FOLDCOMP)
        cif = store_structure(**given, structure_format=MMCIF)
        if fcz.format != FOLDCOMP:
            print(f"{path.stem}: kept as mmCIF: {fcz.fallback_reason}")
            continue
        rmsd, deviation = round_trip_error(fcz.data, np.round(given["atom_positions"], 3), given["atom_mask"])
        length = len(given["sequence"])
        fcz_bytes, cif_bytes = parquet_bytes([fcz.data]), parquet_bytes([cif.data])
        fcz_all.append(fcz.data)
        cif_all.append(cif.data)
        residues_all += length
        print(
            f"{path.stem:<42} {length:>4} {fcz_bytes / length:>9.1f} {cif_bytes / length:>11.1f}"
            f" {rmsd:>7.3f} {deviation:>6.3f}"
        )
    if residues_all:
        fcz_total, cif_total = parquet_bytes(fcz_all) / residues_all, parquet_bytes(cif_all) / residues_all
        print(
            f"{'all':<42} {residues_all:>4} {fcz_total:>9.1f} {cif_total:>11.1f}"
            f"   mmCIF / FCZ = {cif_total / fcz_total:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
