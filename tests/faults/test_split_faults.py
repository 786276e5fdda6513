"""Fault cases of the split: a drop that is DNA, and a tiny gzip that expands to one 1 GiB record."""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from atlas.chunking import split_main
from atlas.fasta import read_fasta

REPO = Path(__file__).absolute().parents[2]
# One codon per amino acid (E. coli's most used): real proteins written back as coding DNA.
CODON = {
    "A": "GCG", "R": "CGT", "N": "AAC", "D": "GAT", "C": "TGC", "Q": "CAG", "E": "GAA", "G": "GGC",
    "H": "CAT", "I": "ATT", "L": "CTG", "K": "AAA", "M": "ATG", "F": "TTT", "P": "CCG", "S": "AGC",
    "T": "ACC", "W": "TGG", "Y": "TAT", "V": "GTG", "X": "NNN", "U": "TGA",
}  # fmt: skip


def test_nucleotide_drop_is_rejected_record_by_record(fault_case, test_data, tmp_path, capsys):
    case = fault_case(
        "split: a drop of nucleotide FASTA", expected="every record rejected: nucleotide sequence"
    )
    proteins = [r for r in read_fasta(test_data / "UP000000625_83333.fasta") if 10 <= len(r.sequence) <= 400]
    fasta = tmp_path / "cds.fna"
    with open(fasta, "w") as handle:
        for record in proteins[:300]:
            dna = "".join(CODON[residue] for residue in record.sequence) + "TAA"
            lines = "\n".join(dna[i : i + 70] for i in range(0, len(dna), 70))
            handle.write(f">{record.id}_cds\n{lines}\n")
    manifest = tmp_path / "chunks" / "manifest.parquet"
    code = split_main(
        ["--fasta", str(fasta), "--drop", "dna", "--manifest", str(manifest), "--max-length", "1280"]
    )
    rows = pq.read_table(manifest).to_pylist()
    reasons = {row["reason"].split(":")[0] for row in rows}
    case.observed = (
        f"exit {code}, {len(rows)} records, statuses {sorted({r['status'] for r in rows})}, {reasons}"
    )
    assert code == 0 and len(rows) == 300
    assert all(row["status"] == "rejected" for row in rows)
    assert reasons == {"nucleotide sequence"}
    assert "nothing to fold" in capsys.readouterr().err
    assert not list(manifest.parent.glob("*.fasta"))
    case.observed = "every record rejected: nucleotide sequence"


@pytest.mark.slow
def test_one_gib_record_in_a_small_gzip_is_skipped_in_bounded_memory(fault_case, tmp_path):
    case = fault_case(
        "split: 1 MB gzip holding one 1 GiB record",
        expected="rejected too long, peak RSS < 1 GB",
    )
    fasta = tmp_path / "bomb.fa.gz"
    residues = 1 << 30
    piece = b"M" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(fasta, "wb") as handle:
        handle.write(compressor.compress(b">bomb one huge record\n"))
        for _ in range(residues // len(piece)):
            handle.write(compressor.compress(piece))
        handle.write(compressor.compress(b"\n>small\nMKVLAAGLLLAAAAAAW\n"))
        handle.write(compressor.flush())
    assert fasta.stat().st_size < 1.5e6
    manifest = tmp_path / "chunks" / "manifest.parquet"
    command = [sys.executable, "-m", "atlas", "split", "--fasta", str(fasta), "--drop", "bomb"]
    command += ["--manifest", str(manifest), "--max-length", "1280"]
    with open(tmp_path / "split.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    peak_mib = usage.ru_maxrss / 1024  # the largest of the process and its (waited-for) workers
    code = os.waitstatus_to_exitcode(status)
    rows = pq.read_table(manifest).to_pylist() if manifest.exists() else []
    case.observed = (
        f"exit {code}, {[(r['id'], r['status'], r['reason']) for r in rows]}, peak RSS {peak_mib:.0f} MiB"
    )
    print(f"1 GiB record in a {fasta.stat().st_size / 1e6:.1f} MB gzip: peak RSS {peak_mib:.0f} MiB")
    assert code == 0, (tmp_path / "split.log").read_text()
    assert [(r["id"], r["status"], r["reason"], r["length"]) for r in rows] == [
        ("bomb", "rejected", f"too long: {residues} residues > max_length 1280", residues),
        ("small", "queued", None, 17),
    ]
    assert rows[0]["description"] == "one huge record"
    assert peak_mib < 1000
    case.observed = f"rejected too long, peak RSS {peak_mib:.0f} MiB"
