"""atlas fold with the tiny model on CPU: batch invariance, confidence ranges, mmCIF round trips,
out-of-memory back-off, failed rows, and resuming after SIGKILL."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gemmi
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from atlas.fasta import read_fasta, sequence_checksum
from atlas.fold import Entry, Folder, default_chunk_size, dequantize_pae, fold_main, parts_dir_for
from atlas.model import load_model
from atlas.structure import render_mmcif
from atlas.tables import PAE_STEP, PREDICTIONS

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"  # as tests/conftest.py's TEST_DATA

# real sequences: the three ESMFold PDB sequences (65, 59, 27 aa) and an E. coli protein with an X (65 aa)
ESM_SEQS = {r.id: r.sequence for r in read_fasta(DATA / "esmfold_structures_sequences.fasta")}
YBFI = (
    "sp|P39901|YBFI_ECOLI",
    "MIALSVCWQIVRYLCRIRQMXGLNAIEHSNYLRNYMGHLRQKLEQDPARPRHFITETGIGYRFML",
)


def mgnifam(max_length: int, count: int, min_length: int = 0) -> list[tuple[str, str]]:
    seen, records = set(), []
    for record in read_fasta(DATA / "mgnifam_all_seqs_concat.fa"):
        if min_length <= len(record.sequence) <= max_length and record.sequence not in seen:
            seen.add(record.sequence)
            records.append((record.id, record.sequence))
    return records[:count]


def write_fasta(path: Path, records: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f">{name}\n{sequence}\n" for name, sequence in records))
    return path


def entries(records: list[tuple[str, str]]) -> list[Entry]:
    return [Entry(i, name, seq, sequence_checksum(seq)) for i, (name, seq) in enumerate(records)]


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)  # the CI machine's 2 cores are shared; oversubscribed OpenMP threads crawl
    return load_model("tiny", "cpu", "auto")


def folder(tiny, **kwargs) -> Folder:
    options = {"num_recycles": 0, "max_tokens": 10**6, "max_pair_cells": 10**9, "drop": "d", "chunk": "c"}
    options.update(kwargs)
    return Folder(loaded=tiny, **options)


def fold_args(fasta: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--fasta", str(fasta), "--output", str(output), "--drop", "drop1", "--chunk", "L0064-00000",
        "--model", "tiny", "--device", "cpu", "--lm-precision", "auto", "--max-tokens-per-batch", "4096",
        "--max-pair-cells-per-batch", "1048576", "--threads", "1", *extra,
    ]  # fmt: skip


def summary(stderr: str) -> dict[str, str]:
    line = [line for line in stderr.splitlines() if line.startswith("fold summary")][-1]
    return dict(re.findall(r"(\w+)=(\S+)", line))


def test_batch_invariance(tiny):
    """A sequence gets the same pLDDT, pTM, PAE and coordinates alone and in a batch with longer ones."""
    records = [*ESM_SEQS.items(), YBFI, *mgnifam(110, 1, min_length=90)]
    batch = entries(records)
    f = folder(tiny, num_recycles=3, store_pae=True)  # recycling feeds padded positions back too
    together = f._forward(batch, None)
    for entry, batched in zip(batch, together, strict=True):
        alone = f._forward([entry], None)[0]
        np.testing.assert_allclose(batched["plddt"], alone["plddt"], atol=1e-3)
        np.testing.assert_allclose(batched["positions"], alone["positions"], atol=2e-3)
        np.testing.assert_array_equal(batched["atom_mask"], alone["atom_mask"])
        assert batched["ptm"] == pytest.approx(alone["ptm"], abs=1e-4)
        assert batched["max_pae"] == pytest.approx(alone["max_pae"], abs=1e-3)
        # the stored PAE is the sequence's own L x L block, in 0.5 A codes (a value on a code boundary may
        # round either way)
        length = len(entry.sequence)
        assert len(batched["pae"]) == len(alone["pae"]) == length * length
        difference = dequantize_pae(batched["pae"], length) - dequantize_pae(alone["pae"], length)
        assert np.abs(difference).max() <= PAE_STEP
        assert dequantize_pae(alone["pae"], length).max() == pytest.approx(alone["max_pae"], abs=PAE_STEP / 2)
    assert len({round(r["ptm"], 4) for r in together}) > 1, "per-sequence pTM, not one value per batch"


def test_plan_respects_both_bounds(tiny):
    records = mgnifam(200, 40)
    f = folder(tiny, max_tokens=400, max_pair_cells=30_000)
    batches = list(f.plan(entries(records)))
    flat = [e.checksum for b in batches for e in b]
    assert sorted(flat) == sorted(sequence_checksum(s) for _, s in records)
    lengths = [len(e.sequence) for b in batches for e in b]
    assert lengths == sorted(lengths, reverse=True)
    for b in batches:
        lmax = max(len(e.sequence) for e in b)
        assert len(b) == 1 or (len(b) * lmax <= 400 and len(b) * lmax * lmax <= 30_000)
    assert default_chunk_size(100) is None and default_chunk_size(500) == 128
    assert default_chunk_size(900) == 64 and default_chunk_size(1280) == 32


def test_fold_chunk_parquet_and_mmcif(tmp_path, capsys):
    records = [*ESM_SEQS.items(), YBFI, ("dup_of_first", next(iter(ESM_SEQS.values())))]
    fasta = write_fasta(tmp_path / "chunk.fasta", records)
    output = tmp_path / "pred" / "chunk.parquet"
    assert fold_main(fold_args(fasta, output)) == 0
    table = pq.read_table(output)
    assert table.schema.equals(PREDICTIONS)
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [name for name, _ in records]  # FASTA order, duplicate kept
    assert not parts_dir_for(output).exists()
    stats = summary(capsys.readouterr().err)
    assert stats["folded"] == "4" and stats["failed"] == "0"  # the duplicate folded once
    # the tiny model's random weights give chains Foldcomp cannot round-trip: each is kept as mmCIF, counted
    unique = {row["checksum"]: row["structure_format"] for row in rows}
    assert int(stats["mmcif_fallbacks"]) == list(unique.values()).count("mmcif")
    from Bio.PDB.MMCIFParser import MMCIFParser

    for row, (name, sequence) in zip(rows, records, strict=True):
        assert row["status"] == "ok" and row["error"] is None
        assert row["checksum"] == sequence_checksum(sequence) and row["sequence"] == sequence
        assert row["length"] == len(sequence) == len(row["plddt"])
        assert row["model"] == "tiny-seed0" and row["num_recycles"] == 3  # esmfold default: 4 passes
        assert (row["drop"], row["chunk"]) == ("drop1", "L0064-00000")
        plddt = np.array(row["plddt"])
        assert ((plddt >= 0) & (plddt <= 100)).all() and 0 <= row["ptm"] <= 1
        assert row["mean_plddt"] == pytest.approx(plddt.mean(), abs=1e-3)
        assert row["num_conf"] == int((plddt > 70).sum())
        assert 0 < row["max_pae"] < 32
        # stored as Foldcomp where the round trip holds, else mmCIF (UNK residues, random tiny weights)
        assert row["structure_format"] in ("foldcomp", "mmcif")
        mmcif = render_mmcif(row)
        # gemmi: sequence, one residue per position (UNK included), B-factors = per-residue pLDDT
        structure = gemmi.make_structure_from_block(gemmi.cif.read_string(mmcif).sole_block())
        expected = "".join(c if c in "ACDEFGHIKLMNPQRSTVWY" else "X" for c in sequence)
        assert gemmi.one_letter_code(structure.entities[0].full_sequence) == expected
        chain = structure[0]["A"]
        assert len(chain) == len(sequence)
        for residue, value, letter in zip(chain, plddt, expected, strict=True):
            assert (residue.name == "UNK") == (letter == "X")
            assert all(atom.b_iso == pytest.approx(value, abs=0.006) for atom in residue)
        assert "tiny-seed0" in mmcif
        bio = MMCIFParser(QUIET=True).get_structure(name, io.StringIO(mmcif))
        assert len(list(bio.get_residues())) == len(sequence)
    # the output exists: a rerun does nothing
    before = output.stat().st_mtime_ns
    assert fold_main(fold_args(fasta, output)) == 0
    assert output.stat().st_mtime_ns == before


REAL_FORWARD = Folder.model_forward


def _oom_above(max_residues: int, min_chunk: int | None = None, calls: list | None = None):
    """A model_forward that raises torch.OutOfMemoryError on batches above `max_residues` padded residues
    (unless the trunk chunk size is at most `min_chunk`)."""

    def forward(self, aatype, mask, position_ids):
        chunk = self.loaded.model.trunk.chunk_size
        if calls is not None:
            calls.append((tuple(aatype.shape), chunk))
        small_chunks = min_chunk is not None and chunk is not None and chunk <= min_chunk
        if aatype.numel() > max_residues and not small_chunks:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        return REAL_FORWARD(self, aatype, mask, position_ids)

    return forward


def test_oom_splits_batches_then_steps_down_chunk_size(tiny, monkeypatch):
    records = [*ESM_SEQS.items(), YBFI]
    (batch,) = folder(tiny).plan(entries(records))  # one batch, longest first: 65, 65, 59, 27
    reference = {r["checksum"]: r for r in folder(tiny).fold_batch(batch)}
    calls: list = []
    monkeypatch.setattr(Folder, "model_forward", _oom_above(70, calls=calls))
    f = folder(tiny)
    rows = f.fold_batch(batch)
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert [s for s, _ in calls] == [(4, 65), (2, 65), (1, 65), (1, 65), (2, 59), (1, 59), (1, 27)]
    assert f.max_tokens <= 130  # later batches are planned smaller
    for row in rows:
        assert row["plddt"] == pytest.approx(reference[row["checksum"]]["plddt"], abs=1e-3)
        assert row["ptm"] == pytest.approx(reference[row["checksum"]]["ptm"], abs=1e-4)

    # a single sequence still out of memory: trunk chunk size stepped down until it fits
    calls.clear()
    patched = _oom_above(30, min_chunk=16, calls=calls)
    monkeypatch.setattr(Folder, "model_forward", patched)
    rows = folder(tiny).fold_batch(batch[:1])
    assert rows[0]["status"] == "ok"
    assert [c for _, c in calls] == [None, 128, 64, 32, 16]


def test_oom_everywhere_gives_failed_rows(tiny, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(Folder, "model_forward", _oom_above(60))
    records = [*ESM_SEQS.items(), YBFI]
    fasta = write_fasta(tmp_path / "chunk.fasta", records)
    output = tmp_path / "chunk.parquet"
    assert fold_main(fold_args(fasta, output, "--num-recycles", "0")) == 0
    rows = {r["id"]: r for r in pq.read_table(output).to_pylist()}
    assert len(rows) == 4
    for name, sequence in records:
        row = rows[name]
        if len(sequence) > 60:
            assert row["status"] == "failed"
            assert "out of memory" in row["error"] and "chunk sizes" in row["error"]
            assert row["mean_plddt"] is None and row["plddt"] is None and row["structure"] is None
            assert row["ptm"] is None and row["num_conf"] is None and row["max_pae"] is None
        else:
            assert row["status"] == "ok" and row["error"] is None
    assert summary(capsys.readouterr().err)["failed"] == "2"


def test_other_errors_and_nan_become_failed_rows(tiny, monkeypatch):
    """A batch with a sequence that raises (or gives NaN) is split; that sequence alone gets a failed row."""
    from transformers.models.esm.openfold_utils.residue_constants import restype_order_with_x

    records = [*ESM_SEQS.items(), YBFI]
    raises, nan = records[3], records[1]

    def encoded(sequence):
        return torch.tensor([restype_order_with_x.get(c, 20) for c in sequence])

    def index_of(aatype, mask, sequence):
        for b in range(aatype.shape[0]):
            same = torch.equal(aatype[b, : len(sequence)].cpu(), encoded(sequence))
            if int(mask[b].sum()) == len(sequence) and same:
                return b
        return None

    def forward(self, aatype, mask, position_ids):
        if index_of(aatype, mask, raises[1]) is not None:
            raise ValueError("kernel exploded (injected)")
        out = REAL_FORWARD(self, aatype, mask, position_ids)
        b = index_of(aatype, mask, nan[1])
        if b is not None:
            out["positions"][-1][b] = float("nan")
        return out

    monkeypatch.setattr(Folder, "model_forward", forward)
    f = folder(tiny, num_recycles=0)
    (batch,) = f.plan(entries(records))
    rows = {r["id"]: r for r in f.fold_batch(batch)}
    assert len(rows) == 4
    assert {name for name, row in rows.items() if row["status"] == "failed"} == {raises[0], nan[0]}
    assert rows[raises[0]]["error"] == "ValueError: kernel exploded (injected)"
    assert "non-finite" in rows[nan[0]]["error"]
    assert rows[raises[0]]["structure"] is None and rows[nan[0]]["plddt"] is None


def test_sigkill_then_resume_folds_only_the_rest(tmp_path, capsys):
    records = mgnifam(40, 50)
    fasta = write_fasta(tmp_path / "chunk.fasta", records)
    output = tmp_path / "predictions" / "chunk.parquet"
    parts = parts_dir_for(output)
    args = fold_args(fasta, output, "--num-recycles", "0", "--max-tokens-per-batch", "60")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "atlas", "fold", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(list(parts.glob("part-*.parquet"))) < 3:
        assert process.poll() is None, "fold finished or died before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not output.exists()
    written = {}
    for path in sorted(parts.glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            written[row["checksum"]] = row
    assert 0 < len(written) < len(records)

    capsys.readouterr()
    assert fold_main(args) == 0
    stats = summary(capsys.readouterr().err)
    assert int(stats["folded"]) == len(records) - len(written)
    assert int(stats["resumed"]) == len(written)
    rows = pq.read_table(output).to_pylist()
    assert [r["id"] for r in rows] == [name for name, _ in records]  # every sequence once, in order
    assert {r["status"] for r in rows} == {"ok"}
    for row in rows:
        if row["checksum"] in written:
            assert row["structure"] == written[row["checksum"]]["structure"]
    assert not parts.exists()


def test_resume_keeps_only_parts_of_the_same_model_and_recycles(tmp_path, capsys):
    from atlas.fold import write_part

    records = [*ESM_SEQS.items()]
    fasta = write_fasta(tmp_path / "chunk.fasta", records)
    output = tmp_path / "chunk.parquet"
    parts = parts_dir_for(output)

    def row(name, sequence, **changes):
        base = {field.name: None for field in PREDICTIONS}
        base.update(id=name, checksum=sequence_checksum(sequence), sequence=sequence, length=len(sequence))
        base.update(model="tiny-seed0", num_recycles=0, status="ok", drop="drop1", chunk="c")
        base.update(structure_format="mmcif", structure=b"kept")
        base.update(changes)
        return base

    (first, s1), (second, s2), (third, s3) = records
    write_part(parts, [row(first, s1)])  # kept
    write_part(parts, [row(second, s2, model="facebook/esmfold_v1@abc")])  # another model: refolded
    write_part(parts, [row(third, s3, num_recycles=3)])  # other recycles: refolded
    (parts / "part-00003.parquet").write_bytes(b"PAR1 truncated by a kill")  # unreadable: ignored
    assert fold_main(fold_args(fasta, output, "--num-recycles", "0")) == 0
    stats = summary(capsys.readouterr().err)
    assert (stats["folded"], stats["resumed"]) == ("2", "1")
    rows = pq.read_table(output).to_pylist()
    assert [r["id"] for r in rows] == [first, second, third]
    assert rows[0]["structure"] == b"kept" and render_mmcif(rows[1]).startswith("data_")
    assert {r["model"] for r in rows} == {"tiny-seed0"} and {r["num_recycles"] for r in rows} == {0}


def test_broken_gpu_stops_the_job_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    records = mgnifam(40, 5)
    fasta = write_fasta(tmp_path / "chunk.fasta", records)
    output = tmp_path / "chunk.parquet"
    calls = []

    def forward(self, aatype, mask, position_ids):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
        return REAL_FORWARD(self, aatype, mask, position_ids)

    monkeypatch.setattr(Folder, "model_forward", forward)
    args = fold_args(fasta, output, "--num-recycles", "0")
    assert fold_main(args) == 1
    assert not output.exists() and len(list(parts_dir_for(output).glob("part-*.parquet"))) == 2
    monkeypatch.setattr(Folder, "model_forward", REAL_FORWARD)
    capsys.readouterr()
    assert fold_main(args) == 0
    assert summary(capsys.readouterr().err)["folded"] == "3"
    assert [r["status"] for r in pq.read_table(output).to_pylist()] == ["ok"] * 5


def test_empty_chunk(tmp_path):
    fasta = write_fasta(tmp_path / "chunk.fasta", [])
    output = tmp_path / "chunk.parquet"
    assert fold_main(fold_args(fasta, output)) == 0
    table = pq.read_table(output)
    assert table.num_rows == 0 and table.schema.equals(PREDICTIONS)
