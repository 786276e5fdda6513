"""atlas split: manifest accounting, dedupe within and across drops, buckets, determinism, clean failure."""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from atlas.chunking import CHUNK_NAME, split_main
from atlas.cli import main as atlas_main
from atlas.fasta import crc64_hex, read_fasta, sequence_checksum
from atlas.tables import MANIFEST

BUCKETS = [64, 128, 256, 384, 512, 768, 1024, 1280]


def run_split(
    fasta: Path,
    manifest: Path,
    drop: str = "drop1",
    earlier: tuple[Path, ...] = (),
    min_length: int = 16,
    max_length: int = 1280,
    buckets: list[int] = BUCKETS,
    chunk_residues: int = 20_000,
) -> int:
    """The command line exactly as workflow/rules/split.smk writes it."""
    argv = ["--fasta", str(fasta), "--drop", drop, "--manifest", str(manifest), "--earlier-manifests"]
    argv += [str(path) for path in earlier]
    argv += ["--min-length", str(min_length), "--max-length", str(max_length), "--length-buckets"]
    argv += [str(bound) for bound in buckets] + ["--chunk-residues", str(chunk_residues)]
    return split_main(argv)


def manifest_rows(manifest: Path) -> list[dict]:
    table = pq.read_table(manifest)
    assert table.schema == MANIFEST
    return table.to_pylist()


def chunk_files(directory: Path) -> dict[str, list[tuple[str, str]]]:
    """chunk name -> [(id, sequence)], checking the one-line-per-sequence layout."""
    chunks = {}
    for path in sorted(directory.glob("*.fasta")):
        lines = path.read_text().split("\n")
        assert lines[-1] == "" and len(lines) % 2 == 1
        headers, sequences = lines[0:-1:2], lines[1:-1:2]
        assert all(header.startswith(">") and " " not in header for header in headers)
        chunks[path.name.removesuffix(".fasta")] = [
            (h[1:], s) for h, s in zip(headers, sequences, strict=True)
        ]
    return chunks


def bucket_of(length: int) -> int:
    return next(bound for bound in BUCKETS if length <= bound)


@pytest.fixture(scope="module")
def drop1(test_data, tmp_path_factory) -> Path:
    manifest = tmp_path_factory.mktemp("drop1") / "chunks" / "drop1" / "manifest.parquet"
    assert run_split(test_data / "mgnifam_all_seqs_concat.fa", manifest) == 0
    return manifest


def test_every_record_once_and_counts_add_up(test_data, drop1):
    records = list(read_fasta(test_data / "mgnifam_all_seqs_concat.fa"))
    rows = manifest_rows(drop1)
    assert [row["id"] for row in rows] == [record.id for record in records]
    assert all(row["drop"] == "drop1" for row in rows)
    assert [row["checksum"] for row in rows] == [sequence_checksum(r.sequence) for r in records]
    assert [row["length"] for row in rows] == [len(r.sequence) for r in records]
    status = Counter(row["status"] for row in rows)
    assert set(status) == {"queued", "duplicate", "rejected"}
    assert status["queued"] + status["duplicate"] + status["rejected"] == len(records) == 1063
    for row in rows:
        assert (row["reason"] is None) == (row["status"] == "queued")
        assert (row["chunk"] is not None) == (row["status"] == "queued")
    too_long = [row for row in rows if row["status"] == "rejected"]
    assert too_long and all(
        row["reason"] == f"too long: {row['length']} residues > max_length 1280" for row in too_long
    )


def test_duplicates_within_a_drop_name_the_first_id(test_data, drop1):
    rows = manifest_rows(drop1)
    first: dict[str, str] = {}
    for row in rows:
        if row["status"] == "queued":
            first.setdefault(row["checksum"], row["id"])
    duplicates = [row for row in rows if row["status"] == "duplicate"]
    assert len(duplicates) == 5  # the MGnifam file repeats five sequences
    for row in duplicates:
        assert row["reason"] == f"duplicate of {first[row['checksum']]} in drop drop1"
        assert row["chunk"] is None
    assert len(first) == sum(row["status"] == "queued" for row in rows)  # each sequence queued once


def test_chunks_hold_exactly_the_queued_sequences_in_their_buckets(test_data, drop1):
    sequences = {r.id: r.sequence for r in read_fasta(test_data / "mgnifam_all_seqs_concat.fa")}
    rows = manifest_rows(drop1)
    chunks = chunk_files(drop1.parent)
    queued = {row["id"]: row for row in rows if row["status"] == "queued"}
    written = [(name, ident, seq) for name, members in chunks.items() for ident, seq in members]
    assert sorted(ident for _, ident, _ in written) == sorted(queued)
    assert set(chunks) == {row["chunk"] for row in queued.values()}
    for name, ident, seq in written:
        assert seq == sequences[ident]
        assert queued[ident]["chunk"] == name
        assert name.startswith(f"L{bucket_of(len(seq)):04d}-")
    assert list(chunks) == sorted(chunks)  # names sort by bucket, then chunk number
    order = {row["id"]: index for index, row in enumerate(rows)}
    by_bucket: dict[str, list[tuple[int, str, list[tuple[str, str]]]]] = {}
    for name, members in chunks.items():  # in name order
        match = re.fullmatch(r"L(\d{4})-(\d{5})-([0-9a-f]{10})", name)
        assert match, name
        # content-addressed: XOR over the members of CRC64(id) rotated left by 1 bit, XOR CRC64(sequence)
        digest = 0
        for ident, seq in members:
            of_id = int(crc64_hex(ident.encode()), 16)
            digest ^= ((of_id << 1) | (of_id >> 63)) & (2**64 - 1) ^ int(crc64_hex(seq.encode()), 16)
        assert match.group(3) == f"{digest:016x}"[:10]
        by_bucket.setdefault(match.group(1), []).append((int(match.group(2)), name, members))
    for numbered in by_bucket.values():
        assert [number for number, _, _ in numbered] == list(range(len(numbered)))
        members = [member for _, _, chunk in numbered for member in chunk]
        assert [order[i] for i, _ in members] == sorted(order[i] for i, _ in members)  # input order
        before = 0  # a record goes to chunk floor(residues of the bucket before it / chunk_residues)
        for number, name, chunk in numbered:
            for ident, seq in chunk:
                assert before // 20_000 == number, (name, ident)
                before += len(seq)


def test_chunks_of_a_bucket_are_full_but_the_last(drop1):
    residues: dict[str, list[int]] = {}
    for name, members in chunk_files(drop1.parent).items():
        residues.setdefault(name[:5], []).append(sum(len(s) for _, s in members))
    assert any(len(sizes) > 1 for sizes in residues.values())
    for sizes in residues.values():
        assert all(20_000 - 1280 < size < 20_000 + 1280 for size in sizes[:-1])


def test_later_drop_marks_repeats_of_earlier_drops(test_data, drop1, tmp_path):
    first = [r for r in read_fasta(test_data / "mgnifam_all_seqs_concat.fa")]
    owners = {row["checksum"]: row["id"] for row in manifest_rows(drop1) if row["status"] == "queued"}
    repeated = [r for r in first if 16 <= len(r.sequence) <= 1280][:40:4]  # sequences queued in drop1
    new = list(read_fasta(test_data / "esmfold_structures_sequences.fasta"))
    text = "".join(f">new{i}\n{r.sequence.lower()}\n" for i, r in enumerate(repeated))
    text += "".join(f">{r.id}\n{r.sequence}\n" for r in new)
    drop2_fasta = tmp_path / "drop2.fasta.gz"
    drop2_fasta.write_bytes(gzip.compress(text.encode()))
    drop2 = tmp_path / "chunks" / "drop2" / "manifest.parquet"
    assert run_split(drop2_fasta, drop2, drop="drop2", earlier=(drop1,)) == 0
    rows = manifest_rows(drop2)
    for row, record in zip(rows, repeated, strict=False):
        assert row["status"] == "duplicate"
        assert row["reason"] == f"duplicate of {owners[sequence_checksum(record.sequence)]} in drop drop1"
    assert [row["status"] for row in rows[len(repeated) :]] == ["queued"] * len(new)
    assert sorted(i for c in chunk_files(drop2.parent).values() for i, _ in c) == sorted(r.id for r in new)

    # A third drop against both: its repeat of drop2 names drop2, its repeat of drop1 names drop1.
    drop3_fasta = tmp_path / "drop3.fa"
    drop3_fasta.write_text(f">x\n{new[0].sequence}\n>y\n{repeated[0].sequence}\n>z\n{'MKV' * 10}\n")
    drop3 = tmp_path / "chunks" / "drop3" / "manifest.parquet"
    assert run_split(drop3_fasta, drop3, drop="drop3", earlier=(drop1, drop2)) == 0
    assert [(row["status"], row["reason"]) for row in manifest_rows(drop3)] == [
        ("duplicate", f"duplicate of {new[0].id} in drop drop2"),
        ("duplicate", f"duplicate of {owners[sequence_checksum(repeated[0].sequence)]} in drop drop1"),
        ("queued", None),
    ]


def test_prodigal_drop(test_data, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    assert run_split(test_data / "938293.PRJEB85.HG003687.faa", manifest, drop="prodigal") == 0
    rows = manifest_rows(manifest)
    assert len(rows) == 2100
    written = [s for members in chunk_files(tmp_path).values() for _, s in members]
    assert len(written) == sum(row["status"] == "queued" for row in rows)
    assert not any("*" in s for s in written)
    assert any("XXXXXXXXXX" in s for s in written)  # assembly-gap X runs are folded as unknown residues


def test_deterministic_byte_for_byte(test_data, tmp_path):
    outputs = []
    for run in ("a", "b"):
        manifest = tmp_path / run / "manifest.parquet"
        assert run_split(test_data / "UP000000625_83333.fasta", manifest, chunk_residues=50_000) == 0
        outputs.append(
            {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(manifest.parent.iterdir())}
        )
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 10


def test_rerun_replaces_stale_chunks_and_leaves_no_temporaries(test_data, tmp_path):
    manifest = tmp_path / "manifest.parquet"
    other = tmp_path / "notes.fasta"  # not a chunk of ours: left alone
    other.write_text(">keep\nMKV\n")
    assert run_split(test_data / "mgnifam_all_seqs_concat.fa", manifest, chunk_residues=5_000) == 0
    many = set(chunk_files(tmp_path))
    assert run_split(test_data / "mgnifam_all_seqs_concat.fa", manifest, chunk_residues=10**9) == 0
    few = set(chunk_files(tmp_path)) - {"notes"}
    assert len(few) == 8 < len(many)
    assert few == {row["chunk"] for row in manifest_rows(manifest)} - {None}
    assert other.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


BAD_INPUT = (
    ">lower\nmkvlaaglllaaaaaaaa\n"  # 1 queued, upper-cased
    ">crlf\r\nMKVLAAGLLLAAAAAA\r\nCC\r\n"  # 3 queued
    ">stop\nMKVLAAGLLLAAAAAAWW*\n"  # 5 queued, terminal '*' removed
    ">xrun\nMKVLXXXXXXXXXXXXXXXXXXXXAA\n"  # 7 queued
    ">empty\n"  # 9
    ">digit\nMKVLAAGLL1LAAAAAA\n"  # 10
    ">gap\nMKVLAAG-LLLAA.AAAA\n"  # 12
    ">internal\nMKVLAAG*LLLAAAAAA\n"  # 14
    ">short\nMKV\n"  # 16
    ">long\n" + "M" * 101 + "\n"  # 18
    ">allx\n" + "X" * 20 + "\n"  # 20
    ">lower\nMKVLAAGLLLAAAAAAQQ\n"  # 22 repeated id
    ">\nMKVLAAGLLLAAAAAAEE\n"  # 24 no id
    ">again\nMKVLAAGLLLAAAAAACC\n"  # 26 same sequence as crlf
)


def test_each_bad_input_gives_its_reason(tmp_path):
    fasta = tmp_path / "bad.fasta"
    fasta.write_bytes(BAD_INPUT.encode())
    manifest = tmp_path / "out" / "manifest.parquet"
    assert run_split(fasta, manifest, drop="bad", max_length=100, buckets=[32, 100]) == 0
    rows = manifest_rows(manifest)
    assert [(row["id"], row["status"], row["reason"]) for row in rows] == [
        ("lower", "queued", None),
        ("crlf", "queued", None),
        ("stop", "queued", None),
        ("xrun", "queued", None),
        ("empty", "rejected", "empty sequence"),
        ("digit", "rejected", "invalid character '1' (first at residue 10); residues must be letters A-Z"),
        ("gap", "rejected", "invalid characters '-', '.' (first at residue 8); residues must be letters A-Z"),
        ("internal", "rejected", "internal stop codon '*' at residue 8 (only a terminal '*' is removed)"),
        ("short", "rejected", "too short: 3 residues < min_length 16"),
        ("long", "rejected", "too long: 101 residues > max_length 100"),
        ("allx", "rejected", "no standard residue: all 20 residues are unknown (B/J/O/U/X/Z)"),
        ("lower", "rejected", "repeated id: first occurrence at line 1"),
        ("", "rejected", "empty id"),
        ("again", "duplicate", "duplicate of crlf in drop bad"),
    ]
    lengths = {row["id"]: row["length"] for row in rows[:4]}
    assert lengths == {"lower": 18, "crlf": 18, "stop": 18, "xrun": 26}
    assert rows[0]["checksum"] == hashlib.md5(b"MKVLAAGLLLAAAAAAAA").hexdigest()
    chunks = chunk_files(manifest.parent)
    assert [name[:12] for name in chunks] == ["L0032-00000-"]
    assert list(chunks.values()) == [
        [
            ("lower", "MKVLAAGLLLAAAAAAAA"),
            ("crlf", "MKVLAAGLLLAAAAAACC"),
            ("stop", "MKVLAAGLLLAAAAAAWW"),
            ("xrun", "MKVLXXXXXXXXXXXXXXXXXXXXAA"),
        ]
    ]


def test_empty_drop_gives_an_empty_manifest(tmp_path, capsys):
    fasta = tmp_path / "empty.fa"
    fasta.write_text("")
    manifest = tmp_path / "manifest.parquet"
    assert run_split(fasta, manifest, drop="empty") == 0
    assert manifest_rows(manifest) == []
    assert list(tmp_path.glob("*.fasta")) == []
    assert "holds no FASTA record" in capsys.readouterr().err


def test_summary_goes_to_stderr(test_data, tmp_path, capsys):
    manifest = tmp_path / "manifest.parquet"
    assert run_split(test_data / "UP000000625_83333.fasta", manifest, drop="ecoli") == 0
    err = capsys.readouterr().err
    assert "split ecoli: 4391 records read" in err
    assert "rejected: too short: 18" in err and "duplicate: within the drop: 42" in err
    assert re.search(r"chunks of up to \d+ residues written \(L0064 1,", err)


RANDOM = random.Random(0)
RANDOM_DROP = "".join(
    f">r{i}\n{''.join(RANDOM.choices('ACDEFGHIKLMNPQRSTVWY', k=80))}\n" for i in range(500)
).encode()
MALFORMED = {
    "binary": (b">a\nMKVLAAGLLLAAAAAA\n>b\nMKV\x00\x01\x02\n", ["NUL byte", "line 4", "byte offset 26"]),
    "not_fasta": (b"sequence\nMKVLAAGLLLAAAAAA\n", ["not a FASTA file", "line 1"]),
    "truncated_gzip": (
        gzip.compress(RANDOM_DROP)[:3000],
        ["truncated gzip", "compressed byte"],
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_fails_cleanly(test_data, tmp_path, capsys, case):
    data, parts = MALFORMED[case]
    fasta = tmp_path / f"{case}.fa"
    fasta.write_bytes(data)
    out = tmp_path / "chunks" / case
    manifest = out / "manifest.parquet"
    # An earlier good run of this drop: a failed rerun must not leave its outputs behind either.
    assert run_split(test_data / "mgnifam_all_seqs_concat.fa", manifest, drop=case) == 0
    assert manifest.exists() and list(out.glob("*.fasta"))
    capsys.readouterr()
    assert run_split(fasta, manifest, drop=case) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"atlas split: error: {fasta}: ")
    for part in parts:
        assert part in err
    assert not manifest.exists()
    assert all(CHUNK_NAME.match(path.name) for path in out.iterdir())  # no temporaries


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"buckets": [64, 32, 1280]}, "length_buckets must be strictly ascending"),
        ({"buckets": [64, 128]}, "the last length bucket (128) must be >= max_length (1280)"),
        (
            {"min_length": 100, "max_length": 50, "buckets": [64]},
            "max_length (50) must be >= min_length (100)",
        ),
        ({"chunk_residues": 0}, "chunk_residues must be >= 1"),
        ({"earlier": (Path("/nonexistent/manifest.parquet"),)}, "no such file"),
    ],
)
def test_bad_settings_fail_with_one_line(test_data, tmp_path, capsys, options, message):
    manifest = tmp_path / "manifest.parquet"
    assert run_split(test_data / "esmfold_structures_sequences.fasta", manifest, **options) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_earlier_manifest_that_is_not_parquet(test_data, tmp_path, capsys):
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("not parquet")
    manifest = tmp_path / "out" / "manifest.parquet"
    assert run_split(test_data / "esmfold_structures_sequences.fasta", manifest, earlier=(bogus,)) == 1
    assert "not a readable Parquet file" in capsys.readouterr().err
    assert not manifest.exists()


def test_atlas_cli_dispatch_and_example_gzip_drop(tmp_path):
    example = Path(__file__).parents[1] / "example"
    manifest = tmp_path / "manifest.parquet"
    argv = [
        "split",
        "--fasta",
        str(example / "drop2.fasta.gz"),
        "--drop",
        "drop2",
        "--manifest",
        str(manifest),
    ]
    argv += ["--earlier-manifests", "--min-length", "16", "--max-length", "1280", "--length-buckets", "64"]
    argv += ["128", "256", "384", "512", "768", "1024", "1280", "--chunk-residues", "2000"]
    assert atlas_main(argv) == 0
    rows = manifest_rows(manifest)
    assert rows and {row["drop"] for row in rows} == {"drop2"}
    assert sum(len(m) for m in chunk_files(tmp_path).values()) == sum(r["status"] == "queued" for r in rows)


def test_the_split_program_imports_neither_pandas_nor_scipy_linalg(test_data, tmp_path):
    """`atlas split` as the rules run it: pyarrow's first array would import pandas to look for pandas
    objects, and numba's first call scipy.linalg to look for a BLAS (0.3 and 0.12 s of start-up); the split
    needs neither, and its outputs are whole without them."""
    import subprocess
    import sys

    manifest = tmp_path / "out" / "manifest.parquet"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "atlas", "split", "--fasta"]
        + [str(test_data / "mgnifam_all_seqs_concat.fa"), "--drop", "d", "--manifest", str(manifest)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if "import time:" in line}
    assert "numba" in imported and "pyarrow" in imported
    # The refused attempts are listed too (pandas; scipy.linalg, and the cython_blas numba asked for): an
    # import that ran lists the modules it loaded under them.
    loaded = {name for name in imported if name.startswith(("pandas.", "scipy.linalg."))}
    assert loaded <= {"scipy.linalg.cython_blas"}
    rows = manifest_rows(manifest)
    assert len(rows) == len(list(read_fasta(test_data / "mgnifam_all_seqs_concat.fa")))
    assert sum(len(m) for m in chunk_files(manifest.parent).values()) == sum(
        r["status"] == "queued" for r in rows
    )


def test_earlier_manifest_equal_to_the_output_is_refused_untouched(test_data, tmp_path, capsys):
    manifest = tmp_path / "manifest.parquet"
    assert run_split(test_data / "esmfold_structures_sequences.fasta", manifest) == 0
    before = manifest.read_bytes()
    assert run_split(test_data / "esmfold_structures_sequences.fasta", manifest, earlier=(manifest,)) == 1
    assert "cannot be one of the earlier manifests" in capsys.readouterr().err
    assert manifest.read_bytes() == before


def test_a_sequence_queued_by_two_earlier_drops_names_the_first(tmp_path):
    # Only hand-made manifests queue one sequence twice; the owner is then the first drop given.
    for drop in ("da", "db"):
        (tmp_path / f"{drop}.fa").write_text(f">{drop}_seq\n{'MKVL' * 10}\n")
        assert run_split(tmp_path / f"{drop}.fa", tmp_path / drop / "manifest.parquet", drop=drop) == 0
    (tmp_path / "dc.fa").write_text(f">mine\n{'MKVL' * 10}\n")
    earlier = (tmp_path / "db" / "manifest.parquet", tmp_path / "da" / "manifest.parquet")
    manifest = tmp_path / "dc" / "manifest.parquet"
    assert run_split(tmp_path / "dc.fa", manifest, drop="dc", earlier=earlier) == 0
    assert manifest_rows(manifest)[0]["reason"] == "duplicate of db_seq in drop db"


def test_manifest_keeps_description_crc64_and_header_fields(test_data, tmp_path):
    from Bio.SeqUtils.CheckSum import crc64

    manifest = tmp_path / "uniprot" / "manifest.parquet"
    assert run_split(test_data / "UP000000625_83333.fasta", manifest, drop="uniprot") == 0
    records = list(read_fasta(test_data / "UP000000625_83333.fasta"))
    rows = manifest_rows(manifest)
    assert [row["description"] for row in rows] == [r.description for r in records]
    assert [f"CRC-{row['crc64']}" for row in rows] == [crc64(r.sequence) for r in records]
    assert dict(rows[0]["header_fields"])["OS"] == "Escherichia coli (strain K12)"
    assert all(row["is_fragment"] is None for row in rows)

    manifest = tmp_path / "prodigal" / "manifest.parquet"
    assert run_split(test_data / "938293.PRJEB85.HG003687.faa", manifest, drop="prodigal") == 0
    rows = manifest_rows(manifest)
    assert {dict(row["header_fields"])["partial"]: row["is_fragment"] for row in rows} == {
        "00": False,
        "01": True,
        "10": True,
    }


def test_mgnify_headers_give_fl_cr_fields(test_data, tmp_path):
    # MGnify protein headers: >MGYP000000001 PL=00 FL=1 CR=0 (the sequences are real MGnify ones)
    records = list(read_fasta(test_data / "mgnifam_all_seqs_concat.fa"))[:40]
    fasta = tmp_path / "mgnify.fa"
    fasta.write_text(
        "".join(
            f">MGYP{i:012d} PL={i % 2}{i % 3 % 2} FL={i % 2} CR={i % 4 // 2}\n{r.sequence}\n"
            for i, r in enumerate(records)
        )
    )
    manifest = tmp_path / "out" / "manifest.parquet"
    assert run_split(fasta, manifest, drop="mgnify") == 0
    rows = manifest_rows(manifest)
    assert [row["is_fragment"] for row in rows] == [i % 2 == 0 for i in range(40)]  # FL=0: a fragment
    assert [dict(row["header_fields"])["CR"] for row in rows] == [str(i % 4 // 2) for i in range(40)]
    assert rows[3]["description"] == "PL=10 FL=1 CR=1"


def test_utf8_headers_and_nucleotide_records_in_a_drop(tmp_path):
    dna = "ATGGCGAAACTGCTGATTACCGGCGCGAGCAGCGGCATTGGCCTGGAACTGGCG"
    fasta = tmp_path / "mixed.fa"
    fasta.write_text(
        f">prot_ü_α some description\n{'MKVLAAGLLL' * 3}\n>dna\n{dna}\n>rna\n{dna.replace('T', 'U')}\n"
    )
    manifest = tmp_path / "out" / "manifest.parquet"
    assert run_split(fasta, manifest, drop="mixed") == 0
    rows = manifest_rows(manifest)
    assert [(row["id"], row["description"], row["status"]) for row in rows] == [
        ("prot_ü_α", "some description", "queued"),
        ("dna", "", "rejected"),
        ("rna", "", "rejected"),
    ]
    assert all(row["reason"].startswith("nucleotide sequence: 100% of the first 54") for row in rows[1:])
    assert [ident for members in chunk_files(manifest.parent).values() for ident, _ in members] == [
        "prot_ü_α"
    ]


def test_rerun_on_the_same_content_touches_no_chunk(test_data, tmp_path):
    fasta = tmp_path / "drop.fa"
    fasta.write_bytes((test_data / "mgnifam_all_seqs_concat.fa").read_bytes())
    manifest = tmp_path / "chunks" / "manifest.parquet"
    assert run_split(fasta, manifest, chunk_residues=5_000) == 0
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in manifest.parent.iterdir()}
    os.utime(fasta)  # `touch`
    assert run_split(fasta, manifest, chunk_residues=5_000) == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in manifest.parent.iterdir()}
    assert after == before  # same names, bytes and mtimes, the manifest included


def test_changed_content_gets_new_chunk_names_and_keeps_the_others(test_data, tmp_path):
    records = list(read_fasta(test_data / "mgnifam_all_seqs_concat.fa"))
    fasta = tmp_path / "drop.fa"
    fasta.write_text("".join(f">{r.id}\n{r.sequence}\n" for r in records))
    manifest = tmp_path / "chunks" / "manifest.parquet"
    assert run_split(fasta, manifest, chunk_residues=5_000) == 0
    old = {row["id"]: row["chunk"] for row in manifest_rows(manifest)}
    mtimes = {p.name: p.stat().st_mtime_ns for p in manifest.parent.glob("*.fasta")}
    # One record of the L0128 bucket changes its sequence (same length, so the cut points stay).
    changed = next(r for r in records if 64 < len(r.sequence) <= 128)
    edited = changed.sequence[:-1] + ("A" if changed.sequence[-1] != "A" else "C")
    fasta.write_text("".join(f">{r.id}\n{edited if r is changed else r.sequence}\n" for r in records))
    assert run_split(fasta, manifest, chunk_residues=5_000) == 0
    new = {row["id"]: row["chunk"] for row in manifest_rows(manifest)}
    renamed = {old[i] for i in old if old[i] != new[i]}
    assert renamed == {old[changed.id]}  # only the chunk that holds the changed record
    assert new[changed.id] != old[changed.id] and new[changed.id][:12] == old[changed.id][:12]
    assert not (manifest.parent / f"{old[changed.id]}.fasta").exists()  # not named by the manifest any more
    for path in manifest.parent.glob("*.fasta"):
        if path.stem != new[changed.id]:
            assert path.stat().st_mtime_ns == mtimes[path.name]  # untouched


def test_progress_bars_cover_the_read_and_the_write_pass(test_data, tmp_path, capsys):
    from atlas.chunking import split_drop

    source = test_data / "938293.PRJEB85.HG003687.faa"
    records = sum(1 for _ in read_fasta(source))
    summary = split_drop(source, "shown", tmp_path / "shown" / "manifest.parquet", progress=True)
    shown = capsys.readouterr().err
    assert f"reading {source.name}" in shown and "100%" in shown
    assert re.search(rf"writing chunks: 100%.*{records}/{records}", shown)
    assert summary.records == records
    split_drop(source, "quiet", tmp_path / "quiet" / "manifest.parquet")  # a small input: no bars
    assert capsys.readouterr().err == ""


def test_parallel_parsing_gives_the_same_output(test_data, tmp_path):
    from atlas.chunking import split_drop

    outputs = []
    source = test_data / "938293.PRJEB85.HG003687.faa"
    for workers, block_size in ((1, 1 << 24), (2, 50_000), (1, 7_000)):
        manifest = tmp_path / f"{workers}-{block_size}" / "manifest.parquet"
        split_drop(
            source, "prodigal", manifest, chunk_residues=50_000, workers=workers, block_size=block_size
        )
        outputs.append({p.name: p.read_bytes() for p in sorted(manifest.parent.iterdir())})
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) > 5


def test_invalid_utf8_stops_the_drop_from_a_worker(test_data, tmp_path, capsys):
    from atlas.chunking import split_drop
    from atlas.fasta import FastaFormatError

    good = (test_data / "mgnifam_all_seqs_concat.fa").read_bytes()
    fasta = tmp_path / "bad.fa"
    fasta.write_bytes(good + b">broken caf\xe9\nMKVLAAGLLLAAAAAA\n" + good[:5000])
    manifest = tmp_path / "out" / "manifest.parquet"
    with pytest.raises(FastaFormatError) as caught:
        split_drop(fasta, "bad", manifest, workers=2, block_size=20_000)
    message = str(caught.value)
    assert str(fasta) in message and "invalid UTF-8 byte 0xe9" in message and "record 'broken'" in message
    line = good.count(b"\n") + 1
    assert f"line {line}," in message
    assert not manifest.exists()


def test_max_chunks_bounds_the_number_of_chunks_whatever_the_drop(test_data, tmp_path):
    """A drop that would make many chunks at chunk_residues makes at most max_chunks (the size grows)."""
    from atlas.chunking import chunk_size, split_drop

    manifest = tmp_path / "drop" / "manifest.parquet"
    summary = split_drop(
        test_data / "mgnifam_all_seqs_concat.fa", "d", manifest, chunk_residues=2000, max_chunks=12
    )
    chunks = pq.read_table(manifest, columns=["chunk"]).column("chunk").drop_null().unique().to_pylist()
    assert 8 < len(chunks) <= 12 and len(summary.chunks) == len(chunks)
    assert summary.chunk_residues > 2000
    unbounded = split_drop(
        test_data / "mgnifam_all_seqs_concat.fa",
        "d",
        tmp_path / "free" / "manifest.parquet",
        chunk_residues=2000,
    )
    assert len(unbounded.chunks) > 12 and unbounded.chunk_residues == 2000
    # MGnify90 in one drop: 125 G residues, 8 buckets, 2,000 chunks at most
    size = chunk_size(500_000, 125_000_000_000, 8, 2000)
    assert -(-125_000_000_000 // size) + 8 <= 2000 < -(-125_000_000_000 // (size - 1000)) + 8
    assert chunk_size(500_000, 1_000_000, 8, 2000) == 500_000


def test_vectorised_blocks_agree_with_the_per_record_definitions(test_data, tmp_path):
    """Real Prodigal and UniProt records, rewritten the ways drops arrive (lower case, a terminal '*', two
    of them, a '*' alone, spaces and tabs, no line breaks, repeated ids and sequences), split in small blocks
    by worker threads: every manifest row is what read_fasta and check_sequence say of its record."""
    from atlas.chunking import split_drop
    from atlas.fasta import check_sequence

    rng = random.Random(7)
    source = list(read_fasta(test_data / "938293.PRJEB85.HG003687.faa"))[:300]
    source += list(read_fasta(test_data / "UP000000625_83333.fasta"))[:300]
    texts = []
    for index, record in enumerate(source):
        sequence = record.sequence
        kind = index % 9
        if kind == 1:
            sequence = sequence.lower()
        elif kind == 2:
            sequence += "*"
        elif kind == 3:
            sequence += "**"
        elif kind == 4:
            sequence = sequence[:5] + " \t" + sequence[5:] + "*"
        elif kind == 5:
            sequence = "*"
        elif kind == 6:
            sequence = source[rng.randrange(index)].sequence if index else sequence
        name = record.id if kind != 7 else source[rng.randrange(index)].id
        lines = (
            sequence if kind == 8 else "\n".join(sequence[i : i + 60] for i in range(0, len(sequence), 60))
        )
        texts.append(f">{name} {record.description}\n{lines}\n")
    fasta = tmp_path / "drop.fasta"
    fasta.write_text("".join(texts))
    manifest = tmp_path / "out" / "manifest.parquet"
    split_drop(fasta, "d", manifest, max_length=1000, block_size=20_000, workers=2, progress=False)

    rows = manifest_rows(manifest)
    records = list(read_fasta(fasta))
    assert len(rows) == len(records) == 600
    seen_ids, seen_sequences = set(), set()
    for row, record in zip(rows, records, strict=True):
        reason = check_sequence(record.sequence, 16, 1000)
        assert (row["id"], row["length"]) == (record.id, len(record.sequence))
        assert row["checksum"] == sequence_checksum(record.sequence)
        assert row["crc64"] == crc64_hex(record.sequence.encode())
        if reason is None and record.id in seen_ids:
            reason = "repeated id"
        if reason is not None:
            assert (row["status"], row["chunk"]) == ("rejected", None)
            assert row["reason"].startswith(reason), (row, reason)
        elif record.sequence in seen_sequences:
            assert (row["status"], row["chunk"]) == ("duplicate", None)
        else:
            assert row["status"] == "queued" and row["chunk"].startswith(
                f"L{bucket_of(len(record.sequence)):04d}"
            )
            seen_sequences.add(record.sequence)
        seen_ids.add(record.id)
    statuses = Counter(row["status"] for row in rows)
    assert statuses["queued"] > 300 and statuses["duplicate"] > 30 and statuses["rejected"] > 100
    queued = {
        (row["id"], record.sequence)
        for row, record in zip(rows, records, strict=True)
        if row["status"] == "queued"
    }
    assert {pair for members in chunk_files(manifest.parent).values() for pair in members} == queued


def test_a_record_longer_than_a_block_is_rejected_with_its_checksums(test_data, tmp_path):
    """A record too long to hold (past the reader's limit) is streamed through its checksums into a part of
    its own; its manifest row has the same MD5, CRC64, length and header metadata as a record parsed in a
    block, and the records around it are queued as usual."""
    from atlas.chunking import split_drop

    records = list(read_fasta(test_data / "mgnifam_all_seqs_concat.fa"))[:40]
    rng = random.Random(5)
    long_sequence = "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(200_000))
    lines = "\n".join(long_sequence[i : i + 60] for i in range(0, len(long_sequence), 60))
    texts = [f">{r.id} {r.description}\n{r.sequence}\n" for r in records]
    texts.insert(20, f">MGYP000000000042 PL=10 FL=1 CR=0\n{lines}\n")
    fasta = tmp_path / "drop.fasta"
    fasta.write_text("".join(texts))
    manifest = tmp_path / "out" / "manifest.parquet"
    split_drop(fasta, "d", manifest, max_length=1000, block_size=4_000, workers=2, progress=False)

    rows = manifest_rows(manifest)
    assert len(rows) == 41
    row = rows[20]
    assert (row["id"], row["status"], row["length"]) == ("MGYP000000000042", "rejected", 200_000)
    assert row["reason"] == "too long: 200000 residues > max_length 1000"
    assert row["checksum"] == sequence_checksum(long_sequence)
    assert row["crc64"] == crc64_hex(long_sequence.encode())
    assert (row["is_fragment"], dict(row["header_fields"])["FL"]) == (False, "1")
    others = rows[:20] + rows[21:]
    for row, record in zip(others, records, strict=True):
        assert (row["id"], row["checksum"]) == (record.id, sequence_checksum(record.sequence))
        assert row["crc64"] == crc64_hex(record.sequence.encode())
    assert Counter(row["status"] for row in others)["queued"] > 30


def test_plain_gzip_and_pipe_input_give_the_same_output(test_data, tmp_path, fifo):
    """The write pass cuts the sequences again from the plain file itself, and from a copy of the text made
    while reading a gzip file or a pipe: the manifest and chunks are the same byte for byte."""
    from atlas.chunking import split_drop

    source = test_data / "938293.PRJEB85.HG003687.faa"
    text = source.read_bytes()
    compressed = tmp_path / "input.faa.gz"
    compressed.write_bytes(gzip.compress(text))
    outputs = []
    for name, path in (("plain", source), ("gzip", compressed), ("pipe", fifo(text))):
        manifest = tmp_path / name / "manifest.parquet"
        split_drop(path, "prodigal", manifest, chunk_residues=50_000, workers=2, block_size=50_000)
        outputs.append({p.name: p.read_bytes() for p in sorted(manifest.parent.iterdir())})
        assert not list(manifest.parent.glob(".split-tmp-*"))
    assert outputs[0] == outputs[1] == outputs[2]
    assert len(outputs[0]) > 5


@pytest.mark.parametrize("change", ["same size", "shorter"])
def test_input_changed_during_the_split_is_refused(test_data, tmp_path, monkeypatch, change):
    """The write pass rereads a plain input: if the file changed after it was read, the split fails (naming
    the file) rather than writing chunks that differ from the manifest's checksums, and leaves no manifest."""
    from atlas import chunking

    fasta = tmp_path / "drop.faa"
    fasta.write_bytes((test_data / "938293.PRJEB85.HG003687.faa").read_bytes())
    read_drop = chunking._read_drop

    def read_then_change(*args, **kwargs):
        count = read_drop(*args, **kwargs)
        text = fasta.read_bytes()
        if change == "same size":  # one residue of the last record changed: only the file's mtime tells
            at = text.rindex(b"M")
            fasta.write_bytes(text[:at] + b"W" + text[at + 1 :])
        else:
            fasta.write_bytes(text[: len(text) // 2])
        return count

    monkeypatch.setattr(chunking, "_read_drop", read_then_change)
    manifest = tmp_path / "out" / "manifest.parquet"
    message = rf"{re.escape(str(fasta))}: changed while it was being split"
    with pytest.raises(chunking.SplitError, match=message):
        chunking.split_drop(fasta, "d", manifest, chunk_residues=50_000, workers=2, block_size=50_000)
    assert not manifest.exists()
    assert not list(manifest.parent.glob("*.fasta")) and not list(manifest.parent.glob(".split-tmp-*"))
