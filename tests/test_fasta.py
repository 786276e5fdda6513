"""atlas.fasta: streaming reader (plain/gzip), normalisation, alphabet policy, format errors, checksum."""

from __future__ import annotations

import bz2
import gzip
import hashlib
from pathlib import Path

import pytest

from atlas.fasta import (
    FastaFormatError,
    FastaRecord,
    check_sequence,
    iter_raw_records,
    read_fasta,
    sequence_checksum,
)

REAL_FILES = {
    "mgnifam_all_seqs_concat.fa": 1063,
    "UP000000625_83333.fasta": 4391,
    "938293.PRJEB85.HG003687.faa": 2100,
    "esmfold_structures_sequences.fasta": 3,
}


def naive_records(path: Path) -> list[tuple[str, str, int, int]]:
    """(id, normalised sequence, header line, header byte offset) by the simplest possible parser."""
    records = []
    offset = 0
    current = None
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("ascii").rstrip("\r\n")
            if line.startswith(">"):
                if current:
                    records.append(current)
                fields = line[1:].split(None, 1)
                current = [fields[0] if fields else "", "", number, offset]
            elif current is not None:
                current[1] += "".join(line.split()).upper()
            offset += len(raw)
    if current:
        records.append(current)
    return [(name, seq[:-1] if seq.endswith("*") else seq, number, at) for name, seq, number, at in records]


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_match_a_naive_parser(test_data, name):
    path = test_data / name
    records = list(read_fasta(path))
    assert len(records) == REAL_FILES[name]
    assert [(r.id, r.sequence, r.line, r.offset) for r in records] == [tuple(r) for r in naive_records(path)]
    assert all(isinstance(r, FastaRecord) for r in records)


@pytest.mark.parametrize(
    ("name", "block_size"),
    [
        ("esmfold_structures_sequences.fasta", 1),
        ("esmfold_structures_sequences.fasta", 2),
        ("mgnifam_all_seqs_concat.fa", 3),
        ("UP000000625_83333.fasta", 13),
        ("UP000000625_83333.fasta", 64),
        ("UP000000625_83333.fasta", 4096),
    ],
)
def test_block_boundaries_do_not_change_records(test_data, tmp_path, name, block_size):
    # Tiny blocks put record boundaries, '\n>' pairs and whole records across reads.
    path = test_data / name
    expected = list(iter_raw_records(path))
    assert list(iter_raw_records(path, block_size=block_size)) == expected
    compressed = write(tmp_path / "x.gz", gzip.compress(path.read_bytes()))
    assert list(iter_raw_records(compressed, block_size=max(block_size, 64))) == expected


def test_uniprot_headers_split_into_id_and_description(test_data):
    first = next(read_fasta(test_data / "UP000000625_83333.fasta"))
    assert first.id == "sp|A0A385XJ53|INSA9_ECOLI"
    assert first.description.startswith("Insertion element IS1 9 protein InsA OS=Escherichia coli")
    assert first.line == 1 and first.offset == 0


def test_prodigal_terminal_stop_removed_and_x_runs_accepted(test_data):
    records = list(read_fasta(test_data / "938293.PRJEB85.HG003687.faa"))
    assert not any("*" in r.sequence for r in records)
    with_x = [r for r in records if "X" in r.sequence]
    assert with_x, "the Prodigal file has X runs from assembly gaps"
    assert all(check_sequence(r.sequence, 16, 100_000) is None for r in with_x)
    assert records[0].description.startswith("# 204 # 629 # -1 # ID=1_1;")


def test_gzip_is_detected_by_magic_bytes_not_name(test_data, tmp_path):
    source = test_data / "mgnifam_all_seqs_concat.fa"
    expected = list(read_fasta(source))
    disguised = write(tmp_path / "looks_plain.fasta", gzip.compress(source.read_bytes()))
    plain_named_gz = write(tmp_path / "not_really.fasta.gz", source.read_bytes())
    assert list(read_fasta(disguised)) == expected
    assert list(read_fasta(plain_named_gz)) == expected


def test_multi_member_gzip(tmp_path):
    path = write(tmp_path / "two.fa.gz", gzip.compress(b">a\nMKV\n") + gzip.compress(b">b\nMKW\n"))
    assert [(r.id, r.sequence) for r in read_fasta(path)] == [("a", "MKV"), ("b", "MKW")]


def test_normalisation_lowercase_crlf_whitespace_terminal_stop(tmp_path):
    text = (
        "\n\n>one first record\r\nmk v\tl\r\nAA*\r\n\r\n>two\nMKV**\n>three  \n\n>four\tdesc with\ttabs\nm\n"
    )
    records = list(read_fasta(write(tmp_path / "x.fa", text)))
    assert [(r.id, r.description, r.sequence, r.line) for r in records] == [
        ("one", "first record", "MKVLAA", 3),
        ("two", "", "MKV*", 7),  # only one terminal '*' is a stop codon; the other is then internal
        ("three", "", "", 9),
        ("four", "desc with\ttabs", "M", 11),
    ]
    assert records[0].offset == 2 and records[1].offset == text.index(">two")


def test_empty_and_blank_files_hold_no_records(tmp_path):
    assert list(read_fasta(write(tmp_path / "empty.fa", ""))) == []
    assert list(read_fasta(write(tmp_path / "blank.fa", "\n \r\n\t\n"))) == []
    assert list(read_fasta(write(tmp_path / "empty.fa.gz", gzip.compress(b"")))) == []


def test_header_without_id(tmp_path):
    records = list(read_fasta(write(tmp_path / "x.fa", ">\nMKV\n> \nMKV\n")))
    assert [(r.id, r.sequence) for r in records] == [("", "MKV"), ("", "MKV")]


@pytest.mark.parametrize(
    ("sequence", "reason"),
    [
        ("", "empty sequence"),
        ("MKV1LA", "invalid character '1' (first at residue 4); residues must be letters A-Z"),
        ("MK-V.LA", "invalid characters '-', '.' (first at residue 3); residues must be letters A-Z"),
        ("MKV*LA", "internal stop codon '*' at residue 4 (only a terminal '*' is removed)"),
        ("MKV*L-A", "invalid characters '*', '-' (first at residue 4); residues must be letters A-Z"),
        ("MKVL", "too short: 4 residues < min_length 5"),
        ("M" * 11, "too long: 11 residues > max_length 10"),
        ("XXXXXX", "no standard residue: all 6 residues are unknown (B/J/O/U/X/Z)"),
        ("XBZUOJ", "no standard residue: all 6 residues are unknown (B/J/O/U/X/Z)"),
        ("MKXXXXXV", None),
        ("MBZUOJX", None),
        ("ACDEFGHIK", None),
    ],
)
def test_check_sequence_reasons(sequence, reason):
    assert check_sequence(sequence, 5, 10) == reason
    assert check_sequence(sequence.encode(), 5, 10) == reason


def test_checksum_is_md5_of_upper_case():
    assert sequence_checksum("mkvl") == hashlib.md5(b"MKVL").hexdigest()
    assert sequence_checksum(b"MKVL") == sequence_checksum("MkVl")


def assert_format_error(path: Path, *parts: str) -> str:
    with pytest.raises(FastaFormatError) as caught:
        list(read_fasta(path))
    message = str(caught.value)
    assert str(path) in message
    for part in parts:
        assert part in message, message
    return message


def test_not_fasta_names_file_and_line(tmp_path):
    assert_format_error(
        write(tmp_path / "table.fa", "\n\nid\tsequence\nA\tMKV\n"),
        "not a FASTA file",
        "line 3",
        "byte offset 2",
        "'id",
    )


def test_binary_nul_byte_names_line_and_byte(tmp_path):
    data = b">a\nMKV\n>b\nMK\x00V\n"
    index = data.index(b"\x00")
    assert_format_error(write(tmp_path / "x.fa", data), "NUL byte", "line 4", f"byte offset {index}")


def test_binary_nul_byte_found_in_a_later_block(tmp_path):
    data = b">a\n" + b"MKVL" * 3_000_000 + b"\n>b\nM\x00\n"
    index = data.index(b"\x00")
    assert_format_error(write(tmp_path / "x.fa", data), "NUL byte", "line 4", f"byte offset {index}")


def test_utf8_header_is_accepted(tmp_path):
    path = write(tmp_path / "x.fa", ">prot_ü_α some description é\nMKV\n>b\nMKW\n".encode())
    records = list(read_fasta(path))
    assert [(r.id, r.description, r.sequence) for r in records] == [
        ("prot_ü_α", "some description é", "MKV"),
        ("b", "", "MKW"),
    ]


def test_invalid_utf8_names_file_record_and_byte(tmp_path):
    data = b">a\nMKV\n>b caf\xe9\nMKV\n"
    path = write(tmp_path / "x.fa", data)
    assert_format_error(path, "invalid UTF-8 byte 0xe9", "line 3", f"byte offset {data.index(0xE9)}", "'b'")


def test_random_binary_file(tmp_path):
    path = write(tmp_path / "x.fa", bytes(range(256)) * 4)
    assert_format_error(path, "not a text FASTA file", "line 1", "byte offset 0")


def test_truncated_gzip(test_data, tmp_path):
    data = gzip.compress((test_data / "mgnifam_all_seqs_concat.fa").read_bytes())
    path = write(tmp_path / "cut.fa.gz", data[: len(data) // 2])
    message = assert_format_error(path, "truncated gzip", "compressed byte", "decompressed")
    lines = int(message.split(" complete lines")[0].split()[-1])
    assert 800 < lines < 2125  # the text went about half way before the cut


def test_corrupt_gzip(tmp_path):
    data = bytearray(gzip.compress(b">a\nMKV\n" * 1000))
    data[20:40] = b"\xff" * 20
    assert_format_error(write(tmp_path / "bad.fa.gz", bytes(data)), "gzip data")


def test_other_compression_is_named(tmp_path):
    assert_format_error(write(tmp_path / "x.fa.bz2", bz2.compress(b">a\nMKV\n")), "bzip2-compressed")


def test_cr_only_line_ends(tmp_path):
    assert_format_error(write(tmp_path / "mac.fa", ">a\rMKV\r>b\rMKV\r"), "carriage return", "line 1")


def test_missing_file_and_directory(tmp_path):
    assert_format_error(tmp_path / "nope.fa", "no such file")
    assert_format_error(tmp_path, "is a directory")
