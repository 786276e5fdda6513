"""Novelty faults: a nucleotide reference is refused before any database is built or searched."""

from __future__ import annotations

import gzip
import random

import pytest

from atlas import novelty
from atlas.cli import main as atlas_main
from atlas.fasta import read_fasta

# One E. coli codon per amino acid: back-translating real proteins gives realistic coding sequences.
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
CODONS = "GCG TGC GAT GAA TTT GGC CAT ATT AAA CTG ATG AAC CCG CAG CGT AGC ACC GTG TGG TAT"
CODON = dict(zip(AMINO_ACIDS, CODONS.split(" "), strict=True))


def coding_fasta(test_data, records: int, proteins: int = 0) -> str:
    """FASTA text of `records` back-translated E. coli genes, then `proteins` E. coli proteins."""
    ecoli = [r for r in read_fasta(test_data / "UP000000625_83333.fasta") if set(r.sequence) <= set(CODON)]
    picked = random.Random(10).sample(ecoli, records + proteins)
    genes = [(f"gene_{r.id}", "".join(CODON[aa] for aa in r.sequence) + "TAA") for r in picked[:records]]
    peptides = [(r.id, r.sequence) for r in picked[records:]]
    return "".join(f">{name}\n{sequence}\n" for name, sequence in genes + peptides)


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_nucleotide_reference_is_refused_before_the_search(
    tmp_path, test_data, capsys, fault_case, compressed
):
    name = "cds reference.fna.gz" if compressed else "cds reference.fna"
    case = fault_case(
        f"novelty: nucleotide reference FASTA ({'gzip' if compressed else 'plain'})",
        expected="refused before createdb, message names the file",
    )
    text = coding_fasta(test_data, records=40, proteins=5)  # mostly nucleotide
    reference = tmp_path / name
    reference.write_bytes(gzip.compress(text.encode()) if compressed else text.encode())
    output = tmp_path / "out" / "reference" / "reference.json"
    rc = atlas_main(["reference-db", "--reference", str(reference), "--output", str(output)])
    error = capsys.readouterr().err
    built = sorted(p.name for p in output.parent.iterdir()) if output.parent.exists() else []
    case.observed = f"exit {rc}, names the file: {str(reference) in error}, built: {built or 'nothing'}"
    assert rc == 1 and str(reference) in error and "nucleotide" in error
    assert "40 of its first 45 records" in error
    assert built == []


def test_protein_reference_with_a_few_nucleotide_records_is_accepted(tmp_path, test_data, fault_case):
    case = fault_case("novelty: protein reference with 10% nucleotide records", expected="accepted")
    reference = tmp_path / "mixed.fasta"
    reference.write_text(coding_fasta(test_data, records=3, proteins=27))
    novelty.check_protein_fasta(reference)  # raises when refused
    case.observed = "accepted"
