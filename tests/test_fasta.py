"""atlas.fasta: streaming reader (plain/gzip), normalisation, alphabet policy, format errors, checksum."""

from __future__ import annotations

import bz2
import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from atlas.fasta import (
    NUCLEOTIDE_WINDOW,
    FastaFormatError,
    FastaRecord,
    check_sequence,
    crc64_hex,
    header_metadata,
    is_nucleotide,
    iter_raw_records,
    parse_block,
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


def test_errors_in_a_pipe_name_the_line_without_reading_it_again(fifo):
    """A pipe can be read only once: the line of a NUL byte in a later block, and how far a truncated gzip
    went, come from what was read, and reading never hangs on the pipe or fails to seek in it."""
    data = b">a\n" + b"MKVL" * 3_000_000 + b"\n>b\nM\x00\n"
    assert_format_error(fifo(data), "NUL byte", "line 4", f"byte offset {data.index(0)}")
    text = b"".join(b">r%d\nMKVLAAGW\n" % number for number in range(200_000))
    compressed = gzip.compress(text)
    cut = fifo(compressed[: len(compressed) // 2])
    message = assert_format_error(cut, "truncated gzip data in a pipe", "decompressed")
    lines = int(message.split(" complete lines")[0].split()[-1])
    assert 0 < lines < text.count(b"\n")


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


def test_crc64_matches_biopython_on_the_uniprot_records(test_data):
    from Bio.SeqUtils.CheckSum import crc64

    records = list(read_fasta(test_data / "UP000000625_83333.fasta"))
    assert len(records) == 4391
    for record in records:
        assert "CRC-" + crc64_hex(record.sequence.encode()) == crc64(record.sequence), record.id


def _compiled_records(block):
    from atlas.blockparse import parse_block_arrays

    arrays = parse_block_arrays(block.data)

    def cut(data, offsets, index):
        return data[offsets[index] : offsets[index + 1]].tobytes()

    return arrays, [
        (
            cut(arrays.ids, arrays.id_offsets, index),
            cut(arrays.descriptions, arrays.description_offsets, index),
            cut(arrays.residues, arrays.offsets, index),
            block.line + int(arrays.lines[index]),
        )
        for index in range(len(arrays.lines))
    ]


EDGE_CASES = (
    b">a  two  spaces\tand a tab \nacdef\nGHIK*\n"  # lower case, a terminal '*' after a line break
    b">\nMKV\n"  # no id
    b">  \t \nMKV\n"  # a header of whitespace only
    b">b\n\n\nMK V\tL\x0bW\n\n"  # blank lines, whitespace inside the sequence
    b">c only-id\n"  # no sequence, the next header right after
    b">d\nMK*L\n"  # an internal '*' (kept: check_sequence rejects it)
    b">e\nACGTACGTACGTNNACGTACGTACGTACGTACGTUUACGTACGTACGTACGTACGTACGTACGTACGTACGTAAAA\n"
    b">f\nXXBZ**\n"  # unknown letters, two '*' (only one removed)
    b">g  \x0bdescription with \x0c form feed \n" + b"M" * 70 + b"\n" + b"K" * 3 + b"\n"
    b">h\nMKV"  # no final newline
)


@pytest.mark.parametrize("data", [EDGE_CASES, EDGE_CASES.replace(b"\n", b"\r\n")], ids=["lf", "crlf"])
def test_compiled_block_parser_cuts_records_as_the_reader_does(data):
    from atlas.blockparse import parse_block_arrays
    from atlas.fasta import Block

    block = Block(data, 7, 0)
    reference = [
        (name, description, sequence, line)
        for name, description, sequence, line, _ in parse_block(block, "x")
    ]
    arrays, records = _compiled_records(block)
    assert records == reference
    assert [f"{crc:016X}" for crc in arrays.sequence_crc64.tolist()] == [crc64_hex(r[2]) for r in reference]
    assert [f"{crc:016X}" for crc in arrays.id_crc64.tolist()] == [crc64_hex(r[0]) for r in reference]
    standard = set(b"ACDEFGHIKLMNPQRSTVWY")
    assert arrays.unusual.tolist() == [not set(r[2]) <= standard for r in reference]
    for others, (_, _, sequence, _) in zip(arrays.window_others.tolist(), reference, strict=True):
        window = sequence[:NUCLEOTIDE_WINDOW]
        assert others == len(window.translate(None, b"ACGTUN"))
    nucleotide = [r[0] for r in reference if is_nucleotide(r[2])]
    assert nucleotide == [b"e"]
    assert [bytes(row).hex() for row in arrays.md5] == [sequence_checksum(r[2]) for r in reference]
    assert arrays.strange == (b"\r" in data)  # CRLF: checked again by record (atlas.fasta.check_block_text)
    for odd in (b"\x00", "é".encode()):  # a NUL byte, a non-ASCII letter: in a sequence, in a header
        assert parse_block_arrays(data.replace(b"MKV", b"M" + odd + b"KV", 1)).strange
        assert parse_block_arrays(data.replace(b">g", b">g" + odd, 1)).strange


@pytest.mark.parametrize("share", [0.0, 0.02, 0.5, 1.0])  # none, lines of ~50 bytes, half, all newlines
def test_compiled_newline_search_finds_every_newline(share):
    from atlas.blockparse import _newline_positions

    rng = np.random.default_rng(7)
    for size in (0, 1, 7, 8, 9, 100, 4099):
        text = np.where(rng.random(size + 3) < share, 10, 77).astype(np.uint8)
        for start in range(3):  # at any alignment
            assert _newline_positions(text[start:]).tolist() == np.flatnonzero(text[start:] == 10).tolist()


def test_compiled_crc64_by_words_matches_the_table_at_every_length():
    from atlas.blockparse import _CRC_TABLE, _crc64

    rng = np.random.default_rng(3)
    data = rng.integers(0, 256, 300, dtype=np.uint8)
    for start in range(3):
        for end in range(start, start + 70):  # every tail length, one to four 16-byte steps
            assert f"{_crc64(_CRC_TABLE, data, start, end):016X}" == crc64_hex(data[start:end].tobytes())


def test_compiled_md5_matches_hashlib_at_every_length():
    from atlas.blockparse import md5_digests

    rng = np.random.default_rng(5)
    lengths = [*range(0, 200), 1000, 1279, 1280, 5000]  # every tail: 55 and 56 bytes past a whole block...
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    data = rng.integers(65, 90, offsets[-1], dtype=np.uint8)
    digests = md5_digests(data, offsets)
    for row, (start, end) in enumerate(zip(offsets[:-1], offsets[1:], strict=True)):
        assert bytes(digests[row]).hex() == hashlib.md5(data[start:end].tobytes()).hexdigest(), end - start


def test_compiled_block_parser_on_real_proteomes(test_data):
    from atlas.fasta import iter_blocks

    for name, count in REAL_FILES.items():
        seen = 0
        for block in iter_blocks(test_data / name, block_size=1 << 16):
            reference = [record[:4] for record in parse_block(block, name)]
            arrays, records = _compiled_records(block)
            assert records == reference
            assert [f"{crc:016X}" for crc in arrays.sequence_crc64.tolist()] == [
                crc64_hex(record[2]) for record in reference
            ]
            assert [bytes(row).hex() for row in arrays.md5] == [sequence_checksum(r[2]) for r in reference]
            assert not arrays.strange  # ASCII with LF line ends
            seen += len(records)
        assert seen == count


LINE_LAYOUTS = b"".join(
    [
        b">full lines of one width\n" + (b"MKVL" * 15 + b"\n") * 2 + b"ACDE" * 5 + b"\n",  # a shorter last
        b">one line\nMKVLACDEFG\n",
        b">blank lines after\n" + b"W" * 8 + b"\n" + b"Y" * 3 + b"\n\n\n",
        b">a longer line\nMKVL\nACDEF\n",  # wider than the first: normalised
        b">blank line inside\nMKVL\n\nACDE\n",
        b">content after a shorter line\nMKVL\nAC\nDE\n",
        b">lower case\nmkvl\nACDE\n",
        b">a terminal stop\nMKVL\nACD*\n",  # copied: the '*' is past the residues
        b">a stop on a line of its own\nMKVL\nACDE\n*\n",
        b">an inner stop\nMK*L\nACDE\n",  # normalised (and rejected by the checks)
        b">spaces\nMK VL\nACDE\n",
        b">no final newline\nMKVL\nACDEFGHIKL\nMK",
    ]
)


@pytest.mark.parametrize("data", [LINE_LAYOUTS, LINE_LAYOUTS.replace(b"\n", b"\r\n")], ids=["lf", "crlf"])
def test_records_are_cut_again_by_their_lines_or_normalised(data):
    """records_text gives each record's `>id` and normalised sequence, whether it copies the lines (a
    record with a line width) or normalises; a newline missing where the width puts one is a change."""
    from atlas.blockparse import parse_block_arrays, records_text
    from atlas.fasta import Block

    arrays = parse_block_arrays(data)
    expected = [60, 10, 8, 0, 0, 0, 0, 4, 4, 0, 0, 0] if b"\r" not in data else [0] * 12  # CR: normalised
    assert arrays.bodies[:, 2].tolist() == expected
    reference = [(name, sequence) for name, _, sequence, _, _ in parse_block(Block(data, 1, 0), "x")]
    lengths = np.diff(arrays.offsets).astype(np.int64)
    text = np.frombuffer(data, np.uint8)
    rows = np.arange(len(lengths))[::-1]  # in any order, in three groups
    groups = rows % 3
    cut, starts, wrong = records_text(
        text, arrays.bodies, arrays.ids, arrays.id_offsets, lengths, rows, groups, 3
    )
    assert wrong == -1
    texts = [
        b"".join(b">%s\n%s\n" % reference[row] for row in rows.tolist() if row % 3 == group)
        for group in range(3)
    ]
    assert cut.tobytes() == b"".join(texts)
    assert starts.tolist() == [0, *np.cumsum([len(piece) for piece in texts]).tolist()]
    if b"\r" not in data:  # the text changed after the parse: a line of the first record one residue longer
        changed = np.frombuffer(data.replace(b"MKVL\nACDE", b"MKVLAACDE", 1), np.uint8)
        cut_again = records_text(
            changed, arrays.bodies, arrays.ids, arrays.id_offsets, lengths, rows, groups, 3
        )
        assert cut_again[2] == 11


def test_header_fields_and_fragment_on_real_prodigal_headers(test_data):
    records = list(read_fasta(test_data / "938293.PRJEB85.HG003687.faa"))
    parsed = [header_metadata(r.description) for r in records]
    fields, fragment = parsed[0]
    assert fields == [
        ("ID", "1_1"),
        ("partial", "00"),
        ("start_type", "ATG"),
        ("rbs_motif", "GGAG/GAGG"),
        ("rbs_spacer", "5-10bp"),
        ("gc_cont", "0.319"),
    ]
    assert fragment is False
    partial = {dict(f)["partial"]: fragment for f, fragment in parsed}
    assert partial == {"00": False, "01": True, "10": True}  # the file holds partial=00, 01 and 10
    assert sum(fragment for _, fragment in parsed) == 3


def test_header_fields_on_real_uniprot_headers_and_fragment_names(test_data):
    records = list(read_fasta(test_data / "UP000000625_83333.fasta"))
    fields, fragment = header_metadata(records[0].description)
    assert fields == [
        ("OS", "Escherichia coli (strain K12)"),
        ("OX", "83333"),
        ("GN", "insA9"),
        ("PE", "3"),
    ] + [("SV", "1")]
    assert fragment is None  # a complete UniProt entry does not say
    assert all(header_metadata(r.description)[1] is None for r in records)
    # The UniProt name of a fragment ends in "(Fragment)" before OS= (this proteome holds none).
    name, rest = records[0].description.split(" OS=", 1)
    assert header_metadata(f"{name} (Fragment) OS={rest}") == (fields, True)
    assert header_metadata(f"{name} (Fragments) OS={rest}")[1] is True


@pytest.mark.parametrize(
    ("description", "fields", "fragment"),
    [
        ("PL=00 FL=1 CR=0", [("PL", "00"), ("FL", "1"), ("CR", "0")], False),
        ("PL=10 FL=0 CR=1", [("PL", "10"), ("FL", "0"), ("CR", "1")], True),
        ("", [], None),
        ("free text, no fields", [], None),
    ],
)
def test_header_fields_on_mgnify_headers(description, fields, fragment):
    assert header_metadata(description) == (fields, fragment)


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_no_real_protein_is_taken_for_nucleotides(test_data, name):
    records = list(read_fasta(test_data / name))
    assert not any(is_nucleotide(r.sequence.encode()) for r in records)
    assert not any("nucleotide" in (check_sequence(r.sequence, 1, 10**6) or "") for r in records)


def test_nucleotide_sequences_are_rejected():
    dna = "ATGGCGAAACTGCTGATTACCGGCGCGAGCAGCGGCATTGGCCTGGAACTGGCG" * 3
    assert check_sequence(dna, 16, 1280) == (
        "nucleotide sequence: 100% of the first 64 residues are A/C/G/T/U/N; a protein FASTA is expected"
    )
    assert check_sequence(dna.replace("T", "U"), 16, 1280).startswith("nucleotide sequence")
    assert check_sequence("ACGT" * 7, 16, 1280) is None  # 28 residues: too short to tell
    protein_like = "MK" + dna[:62]  # 2 of 64 residues outside ACGTUN: still 96% nucleotides
    assert check_sequence(protein_like, 16, 1280).startswith("nucleotide sequence: 96%")
    assert check_sequence("MKVL" * 4 + dna, 16, 1280) is None  # 16 of 64 outside: a protein


def test_over_long_record_is_streamed_not_held(tmp_path):
    from atlas.fasta import SkippedRecord, iter_blocks

    body = b"MKVLAAGL" * 50_000  # 400,000 residues
    text = (
        b">short\nMKV\n>giant some words FL=1\n"
        + b"\n".join(body[i : i + 60] for i in range(0, len(body), 60))
        + b"*\n>after\nMKW\n"
    )
    path = write(tmp_path / "x.fa", text)
    for source in (path, write(tmp_path / "x.fa.gz", gzip.compress(text))):
        items = list(iter_blocks(source, block_size=4096, max_residues=1000))
        skipped = [item for item in items if isinstance(item, SkippedRecord)]
        assert (
            len(skipped) == 1 and skipped[0].id == b"giant" and skipped[0].description == b"some words FL=1"
        )
        assert skipped[0].length == len(body)
        assert skipped[0].checksum == hashlib.md5(body).hexdigest()
        assert skipped[0].crc64 == crc64_hex(body)
        assert skipped[0].line == 3 and skipped[0].offset == text.index(b">giant")
        others = [
            r for item in items if not isinstance(item, SkippedRecord) for r in parse_block(item, source)
        ]
        assert [(r[0], r[2], r[3], r[4]) for r in others] == [
            (b"short", b"MKV", 1, 0),
            (b"after", b"MKW", text.count(b"\n", 0, text.index(b">after")) + 1, text.index(b">after")),
        ]


@pytest.mark.parametrize("block_size", [1 << 10, 1 << 16, 1 << 24])
def test_plain_blocks_hold_the_records_that_the_reader_cuts(test_data, tmp_path, block_size):
    """iter_plain_blocks (the split's reader of plain files: positioned reads, no copy) gives the records
    that iter_blocks gives, at the same lines and offsets: blank lines first, records longer than a block
    and its slack (kept whole, or streamed through their checksums past max_residues), and real ones."""
    from atlas.fasta import SkippedRecord, iter_blocks, iter_plain_blocks

    body = b"MKVLAAGL" * 20_000  # 160,000 residues, 163 kB of text with its newlines
    lines = b"\n".join(body[i : i + 60] for i in range(0, len(body), 60))
    real = (test_data / "mgnifam_all_seqs_concat.fa").read_bytes()
    text = b"\n \n>long one\n" + lines + b"\n" + real + b">long two\n" + lines + b"*\n>last\nMKW"
    path = write(tmp_path / "x.fa", text)

    def records(cut, **settings):
        found, read = [], []
        for item in cut(path, read.append, block_size=block_size, **settings):
            found += [item] if isinstance(item, SkippedRecord) else list(parse_block(item, path))
        assert sum(read) == len(text)
        return found

    for settings in ({}, {"max_residues": 1000}):
        plain = records(iter_plain_blocks, **settings)
        assert plain == records(iter_blocks, **settings)
        skipped = [item.id for item in plain if isinstance(item, SkippedRecord)]
        streamed = settings and block_size < len(lines)  # else the records fit in a block, whole
        assert skipped == ([b"long", b"long"] if streamed else [])
        assert len(plain) == REAL_FILES["mgnifam_all_seqs_concat.fa"] + 3
        first = plain[0]
        assert ((first.line, first.offset) if streamed else first[3:]) == (3, 3)


def test_nul_byte_in_a_streamed_record_names_the_same_line_in_both_readers(tmp_path):
    """A NUL byte past the first block of a record that is streamed through its checksums (too long): both
    readers name its line and byte offset, counted over the text before it."""
    from atlas.fasta import iter_blocks, iter_plain_blocks

    body = b"\n".join([b"MKVLAAGL" * 8] * 5_000)
    data = b">a\nMKV\n>long\n" + body + b"\nMK\x00W\n>b\nMKV\n"
    path = write(tmp_path / "x.fa", data)
    messages = []
    for cut in (iter_blocks, iter_plain_blocks):
        with pytest.raises(FastaFormatError) as caught:
            list(cut(path, block_size=4096, max_residues=1000))
        messages.append(str(caught.value))
    line = data.count(b"\n", 0, data.index(b"\x00")) + 1
    assert messages[0] == messages[1]
    assert f"NUL byte (binary data) at line {line}, byte offset {data.index(0)}" in messages[0]


def test_md5_of_many_messages_matches_hashlib_at_every_padding_boundary():
    """Lengths around MD5's 64-byte blocks (55/56: the length field spills into a new block), an empty
    message, and more messages than lanes with mixed block counts, in an order the lanes must undo."""
    import hashlib

    import numpy as np

    from atlas.blockparse import md5_digests

    rng = np.random.default_rng(7)
    lengths = [0, 1, 55, 56, 63, 64, 119, 120, 127, 128, 1000, 5000] + rng.integers(0, 400, 45).tolist()
    messages = [rng.integers(0, 256, length, dtype=np.uint8).tobytes() for length in lengths]
    data = np.frombuffer(b"".join(messages), np.uint8)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    digests = md5_digests(data, offsets)
    assert digests.shape == (len(messages), 16)
    assert [bytes(row) for row in digests] == [hashlib.md5(message).digest() for message in messages]
    assert md5_digests(data[:0], np.zeros(1, np.int64)).shape == (0, 16)
