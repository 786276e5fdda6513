"""CPU per chain of storing a prediction as the fold step does, beside another checkout's in the same run.

    .venv/bin/python bench/structure_encoding.py [--chains 300] [--baseline DIR]

Times atlas.structure.store_structure (Foldcomp: PDB text, compress, decompress and compare) and
render_mmcif (what `atlas export` does per structure) on chains of MGnify-like lengths with the coordinates
the scale rehearsal's stand-in builds from real ESMFold structures (bench/standin), and the steps apart.
With --baseline DIR (e.g. `git worktree add /tmp/base <commit>`), the same is timed with that checkout's
atlas package, in a subprocess, alternating with this one's, and the ratios printed. At MGnify scale this
is the CPU side of every fold job, run between two GPU batches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = "esmfold_v1"
LETTERS = "ACDEFGHIKLMNPQRSTVWY"


def chains(count: int, seed: int) -> list[dict]:
    sys.path.insert(0, str(REPO / "bench" / "standin"))
    import standin

    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(200), 0.65, count).astype(int), 20, 1280)
    made = []
    for number, length in enumerate(lengths.tolist()):
        sequence = "".join(rng.choice(list(LETTERS), length))
        outputs = standin.predict(sequence, f"{number:032x}")
        made.append(
            {
                "entry_id": f"MGYP{number:012d}",
                "sequence": sequence,
                "atom_positions": outputs["positions"],
                "atom_mask": outputs["atom_mask"],
                "plddt": outputs["plddt"],
                "ptm": outputs["ptm"],
                "model_name": MODEL,
            }
        )
    return made


def measure(count: int, seed: int, repeats: int) -> dict:
    """Seconds per chain (best of `repeats`) of each step, with the atlas package this process imports."""
    import foldcomp

    import atlas.structure as structure

    given = chains(count, seed)
    residues = sum(len(chain["sequence"]) for chain in given)
    stored = [structure.store_structure(**chain) for chain in given]
    rows = [
        {
            "id": chain["entry_id"],
            "sequence": chain["sequence"],
            "plddt": chain["plddt"].tolist(),
            "ptm": chain["ptm"],
            "model": MODEL,
            "structure_format": kept.format,
            "structure": kept.data,
        }
        for chain, kept in zip(given, stored, strict=True)
    ]
    texts = [
        structure._pdb_text(c["entry_id"], c["sequence"], np.round(c["atom_positions"], 3), c["atom_mask"])
        for c in given
    ]
    pdbs = [foldcomp.decompress(kept.data)[1] for kept in stored]
    steps = {
        "store_structure": lambda: [structure.store_structure(**chain) for chain in given],
        "render_mmcif": lambda: [structure.render_mmcif(row) for row in rows],
        "pdb_text": lambda: [
            structure._pdb_text(c["entry_id"], c["sequence"], c["atom_positions"], c["atom_mask"])
            for c in given
        ],
        "foldcomp_compress": lambda: [foldcomp.compress("x", text) for text in texts],
        "foldcomp_decompress": lambda: [foldcomp.decompress(kept.data) for kept in stored],
        "parse_pdb": lambda: [
            structure.atom37_from_pdb(pdb, len(c["sequence"])) for pdb, c in zip(pdbs, given, strict=True)
        ],
    }
    result = {"chains": count, "residues": residues, "foldcomp": sum(k.format == "foldcomp" for k in stored)}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeats):
            started = time.process_time()
            step()
            best = min(best, time.process_time() - started)
        result[name] = best / count
    return result


def run_in(checkout: Path, args) -> dict:
    """measure() with `checkout`'s atlas package, in a subprocess."""
    command = [sys.executable, str(Path(__file__).resolve()), "--json", "--chains", str(args.chains)]
    command += ["--seed", str(args.seed), "--repeats", str(args.repeats)]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per step; the best is kept")
    parser.add_argument("--baseline", type=Path, help="another checkout of this repository, to compare with")
    parser.add_argument("--json", action="store_true", help="print one measurement as JSON (internal)")
    args = parser.parse_args(argv)
    if args.json:
        print(json.dumps(measure(args.chains, args.seed, args.repeats)))
        return 0
    here = run_in(REPO, args)
    base = run_in(args.baseline, args) if args.baseline else None
    print(f"{here['chains']} chains, {here['residues']} residues, {here['foldcomp']} stored as Foldcomp")
    header = f"{'CPU ms per chain':<22}{'this checkout':>14}"
    print(header + (f"{'baseline':>10}{'ratio':>8}" if base else ""))
    for name in (
        "store_structure",
        "pdb_text",
        "foldcomp_compress",
        "foldcomp_decompress",
        "parse_pdb",
        "render_mmcif",
    ):
        line = f"{name:<22}{1000 * here[name]:>14.2f}"
        if base:
            line += f"{1000 * base[name]:>10.2f}{base[name] / here[name]:>7.1f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
