"""Storage cost of the predictions' columns per residue, from the Parquet metadata of an outdir's predictions.

    .venv/bin/snakemake --cores all --configfile example/demo.yaml --config store_pae=True outdir=results/pae
    .venv/bin/python bench/pae_storage.py --outdir results/pae

Prints, for each column (pae, structure, plddt, ...), the bytes per folded residue as stored (zstd, as
the fold step writes) and before compression, over every predictions/**/*.parquet. `pae` holds L^2 bytes
per sequence (uint8 codes of 0.5 A), so its raw cost per residue is the mean length weighted by length; the
structure column is the baseline the ratio column compares with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outdir", required=True, type=Path)
    args = parser.parse_args()
    files = sorted((args.outdir / "predictions").rglob("*.parquet"))
    if not files:
        print(f"no predictions under {args.outdir}/predictions", file=sys.stderr)
        return 1
    sizes: dict[str, list[int]] = {}
    residues = sequences = stored = 0
    for path in files:
        table = pq.read_table(path, columns=["length", "pae"])
        lengths = table.column("length").to_pylist()
        residues += sum(lengths)
        sequences += len(lengths)
        stored += sum(value is not None for value in table.column("pae").to_pylist())
        metadata = pq.ParquetFile(path).metadata
        for group in range(metadata.num_row_groups):
            for index in range(metadata.num_columns):
                column = metadata.row_group(group).column(index)
                name = column.path_in_schema.split(".")[0]
                total = sizes.setdefault(name, [0, 0])
                total[0] += column.total_compressed_size
                total[1] += column.total_uncompressed_size
    print(f"{len(files)} files, {sequences} sequences ({stored} with PAE), {residues} residues")
    baseline = sizes.get("structure", [0, 0])[0] or 1
    print(f"{'column':<16} {'stored B/res':>12} {'raw B/res':>10} {'stored / structure':>18}")
    for name, (compressed, raw) in sorted(sizes.items(), key=lambda item: -item[1][0]):
        ratio = compressed / baseline
        print(f"{name:<16} {compressed / residues:>12.1f} {raw / residues:>10.1f} {ratio:>18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
