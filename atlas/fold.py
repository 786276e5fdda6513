"""`atlas fold`: fold one chunk FASTA with ESMFold into a predictions Parquet (docs/SPEC.md columns).

Batching. Sequences are folded longest first (an out-of-memory batch shows up at the start of a job, not
hours in) in batches bounded by padded residues, B x Lmax <= --max-tokens-per-batch, and by the pair
representation, B x Lmax^2 <= --max-pair-cells-per-batch; a sequence above either bound is folded alone.
Padding efficiency (real / padded residues) is logged. On CPU every sequence is folded alone: there batches
are slower than single sequences (memory-bound B x L^3 triangle attention, padding; see
bench/fold_throughput.py), so batching is for GPUs.

Confidence, per sequence and independent of the batch it was folded in: pLDDT is the CA atom's (atom37 index
1) on 0-100 as in the ESM Atlas; `mean_plddt` its mean, `num_conf` the residues above 70; pTM from the
sequence's own L x L slice of the pTM logits with its own length (transformers' `ptm` output is one number
per batch, taken over padding); `max_pae` the largest entry of the sequence's own L x L predicted aligned
error matrix, in Angstrom (not the constant upper bound of the PAE head, 31.75 A, which transformers calls
`max_predicted_aligned_error`).

PAE (--store-pae). The sequence's own L x L predicted aligned error matrix, quantized to uint8 in PAE_STEP =
0.5 A steps (round half to even; ESMFold's PAE lies in 0-31.75 A, so 0-64 of 255 codes are used) and stored
row-major as L^2 bytes in the `pae` binary column: entry (i, j), the expected error at residue j when aligned
on residue i, is `pae[i * L + j] * 0.5` A. Off: `pae` is null.

Recycles. `num_recycles` is passed to the model (transformers' infer() drops it). Without --num-recycles the
model's default applies: `max_recycles` trunk passes (4 for esmfold_v1), which is `max_recycles - 1`
recycles in the model's own counting (num_recycles=N runs N + 1 passes); the `num_recycles` column holds
that number (3 for esmfold_v1), so --num-recycles with the recorded value reproduces a prediction.

Trunk chunk size (axial attention computed in chunks: slower, O(L) instead of O(L^2) attention memory),
unless --trunk-chunk-size is given, by the batch's longest sequence: none up to 300 residues, 128 up to 600,
64 up to 1000, 32 beyond.

Out of memory: the cache is freed, the batch split in halves and each retried (later batches are planned no
larger than half the failed one); a single sequence is retried with the trunk chunk size stepped down to 4,
and only then gets a `failed` row with the error. Any other error on a batch splits it the same way; on a
single sequence (or non-finite output) it becomes a `failed` row with the error text. Nothing is dropped
silently.

Structures. Each ok row stores its structure Foldcomp-compressed (`structure_format` foldcomp, ~16 bytes per
residue) when its round trip is faithful, else as mmCIF text with the reason logged (atlas.structure);
`--structure-format mmcif` stores mmCIF text for every row. Export renders mmCIF or PDB from either.

Resume. Results are flushed after every batch to `{output}.parts/part-NNNNN.parquet` (written to a temporary
name, then renamed: a part is whole or absent). On start, rows already in parts (same model and recycles)
are kept and their checksums not folded again, so a job killed with SIGKILL and rerun folds only the rest.
The final Parquet is written to a temporary file and renamed into place, then the parts are removed; with
the output present the command does nothing. Rows are in chunk FASTA order.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from atlas.fasta import read_fasta, sequence_checksum
from atlas.tables import FOLD_RESIDUES_KEY, FOLD_SECONDS_KEY, PAE_STEP, PREDICTIONS

log = logging.getLogger("atlas.fold")


PLDDT_CONFIDENT = 70.0
PAE_MAX_BIN = 31  # ESMFold's pTM / PAE head: 64 bins over 0-31 A
PAE_BINS = 64
CHUNK_SIZE_LADDER = (128, 64, 32, 16, 8, 4)  # trunk chunk sizes tried for a single sequence out of memory
MAX_ERROR_CHARS = 4000
FINAL_ROW_GROUP = 256
# Min/max statistics for the columns a reader filters on; none for the sequence, structure, PAE and pLDDT
# list, whose min and max would store up to two more copies of a value per page.
STATISTICS_COLUMNS = [
    field.name
    for field in PREDICTIONS
    if field.name != "sequence" and not (pa.types.is_binary(field.type) or pa.types.is_list(field.type))
]


def quantize_pae(matrix) -> bytes:
    """An L x L PAE tensor (Angstrom) as L^2 uint8 codes of PAE_STEP, row-major (see the module docstring)."""
    import torch

    codes = torch.clamp(torch.round(matrix.float() / PAE_STEP), 0, 255).to(torch.uint8)
    return codes.cpu().numpy().tobytes()


def dequantize_pae(data: bytes, length: int) -> np.ndarray:
    """The L x L PAE matrix in Angstrom from the `pae` column's bytes."""
    codes = np.frombuffer(data, dtype=np.uint8)
    if codes.size != length * length:
        raise ValueError(f"PAE of {codes.size} bytes is not {length} x {length}")
    return codes.reshape(length, length).astype(np.float32) * PAE_STEP


def default_chunk_size(max_length: int) -> int | None:
    """Trunk chunk size by the batch's longest sequence (see the module docstring)."""
    if max_length <= 300:
        return None
    if max_length <= 600:
        return 128
    if max_length <= 1000:
        return 64
    return 32


def parts_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text.lower()
    )


class FatalDeviceError(RuntimeError):
    """The GPU is in a broken state: stop the job (parts are kept, a rerun resumes)."""


def is_fatal_device_error(error: BaseException) -> bool:
    """A broken CUDA context (illegal memory access, device-side assert, ECC error) fails every later call, so
    it stops the job instead of writing `failed` rows for the rest of the chunk."""
    if is_out_of_memory(error):
        return False
    text = str(error)
    return type(error).__name__ == "AcceleratorError" or "CUDA error" in text or "device-side assert" in text


@dataclass
class Entry:
    index: int  # position of the first record with this checksum in the chunk FASTA
    id: str
    sequence: str
    checksum: str


@dataclass
class FoldStats:
    folded: int = 0  # sequences that went through the model in this run (ok + failed)
    failed: int = 0
    residues: int = 0
    padded: int = 0  # B x Lmax summed over successful forward calls
    real: int = 0  # residues in those calls
    forwards: int = 0
    oom_events: int = 0
    errors: int = 0
    seconds: float = 0.0  # wall time spent folding (model loaded), for residues/s
    mmcif_fallbacks: int = 0  # structures kept as mmCIF although Foldcomp was asked for


@dataclass
class Folder:
    """Folds lists of entries with a loaded model; `model_forward` is the one place the network runs."""

    loaded: object  # atlas.model.LoadedModel
    num_recycles: int
    max_tokens: int
    max_pair_cells: int
    trunk_chunk_size: int | None = None
    drop: str = ""
    chunk: str = ""
    software_version: str | None = None
    structure_format: str = "foldcomp"  # atlas.structure.STRUCTURE_FORMATS
    batching: bool = True  # False: one sequence per forward (CPU, where batches are slower)
    store_pae: bool = False  # keep each sequence's quantized PAE matrix in the `pae` column
    stats: FoldStats = field(default_factory=FoldStats)

    # ---- batching ----
    def plan(self, entries: list[Entry]) -> Iterable[list[Entry]]:
        """Longest first, greedy under both bounds; limits are read per batch (they shrink after an OOM)."""
        ordered = sorted(entries, key=lambda e: (-len(e.sequence), e.index))
        if not self.batching:
            yield from ([e] for e in ordered)
            return
        i = 0
        while i < len(ordered):
            lmax = len(ordered[i].sequence)
            size = 1
            while (
                i + size < len(ordered)
                and (size + 1) * lmax <= self.max_tokens
                and (size + 1) * lmax * lmax <= self.max_pair_cells
            ):
                size += 1
            yield ordered[i : i + size]
            i += size

    # ---- the network ----
    def model_forward(self, aatype, mask, position_ids):
        """One forward pass (patched in tests to inject out-of-memory errors)."""
        return self.loaded.model(
            aatype, attention_mask=mask, position_ids=position_ids, num_recycles=self.num_recycles
        )

    def _forward(self, batch: list[Entry], chunk_size: int | None) -> list[dict]:
        import torch
        from transformers.models.esm.openfold_utils.feats import atom14_to_atom37
        from transformers.models.esm.openfold_utils.loss import compute_tm
        from transformers.models.esm.openfold_utils.residue_constants import restype_order_with_x

        device = self.loaded.device
        lengths = [len(e.sequence) for e in batch]
        lmax = max(lengths)
        aatype = torch.zeros(len(batch), lmax, dtype=torch.long)
        mask = torch.zeros(len(batch), lmax, dtype=torch.long)
        for b, entry in enumerate(batch):
            aatype[b, : lengths[b]] = torch.tensor(
                [restype_order_with_x.get(c, 20) for c in entry.sequence.upper()], dtype=torch.long
            )
            mask[b, : lengths[b]] = 1
        position_ids = torch.arange(lmax).expand(len(batch), lmax)
        self.loaded.model.trunk.set_chunk_size(chunk_size)
        with torch.inference_mode():
            out = self.model_forward(aatype.to(device), mask.to(device), position_ids.to(device))
            atom14 = out["positions"][-1].float()  # [B, L, 14, 3]
            atom37 = atom14_to_atom37(atom14, out)  # [B, L, 37, 3], zero where no atom
            exists = out["atom37_atom_exists"].bool()
            plddt = out["plddt"][..., 1].float() * 100.0  # CA pLDDT, [B, L]
            ptm_logits = out["ptm_logits"].float()
            pae = out["predicted_aligned_error"].float()
            ptms, paes, pae_codes = [], [], []
            for b, length in enumerate(lengths):
                logits = ptm_logits[b, :length, :length]
                ptms.append(compute_tm(logits, max_bin=PAE_MAX_BIN, no_bins=PAE_BINS))
                paes.append(pae[b, :length, :length].max())
                if self.store_pae:
                    pae_codes.append(quantize_pae(pae[b, :length, :length]))
            ptm = torch.stack(ptms).cpu().numpy()
            max_pae = torch.stack(paes).cpu().numpy()
            ca14 = atom14[:, :, 1].cpu().numpy()
            atom37 = atom37.cpu().numpy()
            exists = exists.cpu().numpy()
            plddt = plddt.cpu().numpy()
            del out, ptm_logits, pae
        results = []
        for b, n in enumerate(lengths):
            positions, atom_mask, pl = atom37[b, :n].copy(), exists[b, :n].copy(), plddt[b, :n]
            # ESMFold gives unknown residues no atoms; their backbone frame's origin is the CA (structure.py)
            unknown = aatype[b, :n].numpy() == 20
            positions[unknown, 1] = ca14[b, :n][unknown]
            atom_mask[unknown, 1] = True
            results.append(
                {
                    "positions": positions,
                    "atom_mask": atom_mask,
                    "plddt": pl,
                    "ptm": float(ptm[b]),
                    "max_pae": float(max_pae[b]),
                    "pae": pae_codes[b] if self.store_pae else None,
                }
            )
        self.stats.forwards += 1
        self.stats.padded += len(batch) * lmax
        self.stats.real += sum(lengths)
        return results

    # ---- rows ----
    def _base_row(self, entry: Entry) -> dict:
        return {
            "id": entry.id,
            "checksum": entry.checksum,
            "sequence": entry.sequence,
            "length": len(entry.sequence),
            "mean_plddt": None,
            "ptm": None,
            "num_conf": None,
            "plddt": None,
            "max_pae": None,
            "pae": None,
            "structure_format": None,
            "structure": None,
            "model": self.loaded.name,
            "num_recycles": self.num_recycles,
            "status": "failed",
            "error": None,
            "drop": self.drop,
            "chunk": self.chunk,
        }

    def failed_row(self, entry: Entry, error: str) -> dict:
        row = self._base_row(entry)
        row["error"] = error[:MAX_ERROR_CHARS]
        self.stats.failed += 1
        log.error("sequence %s (%d aa) failed: %s", entry.id, len(entry.sequence), error.splitlines()[0])
        return row

    def ok_row(self, entry: Entry, result: dict) -> dict:
        from atlas.structure import store_structure

        plddt = result["plddt"].astype(np.float32)
        stored = store_structure(
            entry_id=entry.id,
            sequence=entry.sequence,
            atom_positions=result["positions"],
            atom_mask=result["atom_mask"],
            plddt=plddt,
            model_name=self.loaded.name,
            ptm=result["ptm"],
            software_version=self.software_version,
            structure_format=self.structure_format,
        )
        if stored.fallback_reason:
            self.stats.mmcif_fallbacks += 1
            log.warning("sequence %s kept as mmCIF: %s", entry.id, stored.fallback_reason)
        row = self._base_row(entry)
        mean = float(plddt.mean())
        row.update(
            mean_plddt=mean,
            ptm=result["ptm"],
            num_conf=int((plddt > PLDDT_CONFIDENT).sum()),
            plddt=plddt.tolist(),
            max_pae=result["max_pae"],
            pae=result.get("pae"),
            structure_format=stored.format,
            structure=stored.data,
            status="ok",
        )
        return row

    @staticmethod
    def _finite(result: dict) -> bool:
        return bool(
            np.isfinite(result["positions"]).all()
            and np.isfinite(result["plddt"]).all()
            and math.isfinite(result["ptm"])
            and math.isfinite(result["max_pae"])
        )

    # ---- one batch with back-off ----
    def fold_batch(self, batch: list[Entry]) -> list[dict]:
        lmax = max(len(e.sequence) for e in batch)
        chunk_size = self.trunk_chunk_size if self.trunk_chunk_size is not None else default_chunk_size(lmax)
        failure: BaseException | None = None
        try:
            results = self._forward(batch, chunk_size)
        except Exception as error:  # noqa: BLE001 - every error ends as a retry or a failed row
            if is_fatal_device_error(error):
                raise FatalDeviceError(f"{type(error).__name__}: {error}") from error
            failure = error
            failure_text = f"{type(error).__name__}: {error}"
            oom = is_out_of_memory(error)
        if failure is not None:
            del failure  # drop the traceback (and the tensors its frames hold) before retrying
            self._free_memory()
            if oom:
                self.stats.oom_events += 1
            else:
                self.stats.errors += 1
            if len(batch) > 1:
                if oom:
                    padded = len(batch) * lmax
                    self.max_tokens = max(1, min(self.max_tokens, padded // 2))
                    self.max_pair_cells = max(1, min(self.max_pair_cells, padded * lmax // 2))
                log.warning(
                    "batch of %d sequences (longest %d) %s; splitting in halves (batch bounds now %d tokens, "
                    "%d pair cells)",
                    len(batch),
                    lmax,
                    "ran out of memory" if oom else f"failed ({failure_text.splitlines()[0]})",
                    self.max_tokens,
                    self.max_pair_cells,
                )
                half = (len(batch) + 1) // 2
                return self.fold_batch(batch[:half]) + self.fold_batch(batch[half:])
            if oom:
                return [self._fold_single_low_memory(batch[0], chunk_size, failure_text)]
            return [self.failed_row(batch[0], failure_text)]

        rows = []
        for entry, result in zip(batch, results, strict=True):
            if not self._finite(result):
                if len(batch) > 1:
                    log.warning(
                        "non-finite output for %s in a batch of %d; refolding it alone", entry.id, len(batch)
                    )
                    rows.extend(self.fold_batch([entry]))
                    continue
                rows.append(
                    self.failed_row(entry, "non-finite model output (NaN or Inf in coordinates/confidence)")
                )
                continue
            try:
                rows.append(self.ok_row(entry, result))
            except Exception as error:  # noqa: BLE001
                rows.append(self.failed_row(entry, f"writing the structure: {type(error).__name__}: {error}"))
        return rows

    def _fold_single_low_memory(self, entry: Entry, chunk_size: int | None, first_error: str) -> dict:
        tried = [chunk_size]
        for smaller in CHUNK_SIZE_LADDER:
            if chunk_size is not None and smaller >= chunk_size:
                continue
            tried.append(smaller)
            log.warning(
                "%s (%d aa) out of memory; retrying with trunk chunk size %d",
                entry.id,
                len(entry.sequence),
                smaller,
            )
            failed = False
            try:
                results = self._forward([entry], smaller)
            except Exception as error:  # noqa: BLE001
                if is_fatal_device_error(error):
                    raise FatalDeviceError(f"{type(error).__name__}: {error}") from error
                failed = True
                last = f"{type(error).__name__}: {error}"
                oom = is_out_of_memory(error)
            if failed:
                self._free_memory()
                if oom:
                    self.stats.oom_events += 1
                    continue
                self.stats.errors += 1
                return self.failed_row(entry, last)
            if not self._finite(results[0]):
                return self.failed_row(
                    entry, "non-finite model output (NaN or Inf in coordinates/confidence)"
                )
            return self.ok_row(entry, results[0])
        return self.failed_row(
            entry, f"out of memory even alone with trunk chunk sizes {tried}: {first_error}"
        )

    def _free_memory(self) -> None:
        import torch

        if self.loaded.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()


# ---- part files ----
def _rows_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=PREDICTIONS)


def write_part(parts_dir: Path, rows: list[dict]) -> Path:
    parts_dir.mkdir(parents=True, exist_ok=True)
    existing = [
        int(p.stem.split("-")[1]) for p in parts_dir.glob("part-*.parquet") if p.stem.split("-")[1].isdigit()
    ]
    number = max(existing, default=-1) + 1
    path = parts_dir / f"part-{number:05d}.parquet"
    tmp = parts_dir / f".{path.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        pq.write_table(_rows_table(rows), handle, compression="zstd", write_statistics=STATISTICS_COLUMNS)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def read_parts(
    parts_dir: Path, model_name: str, num_recycles: int, checksums: set[str]
) -> dict[str, pa.Table]:
    """Rows already written for this chunk: checksum -> one-row table (same model and recycles only)."""
    done: dict[str, pa.Table] = {}
    if not parts_dir.is_dir():
        return done
    ignored = 0
    for path in sorted(parts_dir.glob("part-*.parquet")):
        try:
            table = pq.read_table(path, schema=PREDICTIONS)
        except Exception as error:  # noqa: BLE001 - a damaged part is refolded, not fatal
            log.warning("ignoring unreadable part %s: %s", path, error)
            continue
        rows_checksum = table.column("checksum").to_pylist()
        rows_model = table.column("model").to_pylist()
        rows_recycles = table.column("num_recycles").to_pylist()
        keys = zip(rows_checksum, rows_model, rows_recycles, strict=True)
        for i, (checksum, model, recycles) in enumerate(keys):
            if checksum not in checksums or model != model_name or recycles != num_recycles:
                ignored += 1
                continue
            done.setdefault(checksum, table.slice(i, 1))
    if ignored:
        log.warning("ignored %d rows in %s from another model, recycle count or chunk", ignored, parts_dir)
    return done


def write_final(
    output: Path,
    records: list[Entry],
    done: dict[str, pa.Table],
    drop: str,
    chunk: str,
    timing: dict[str, str] | None = None,
) -> None:
    """The chunk's Parquet in FASTA order, written to a temporary file and renamed into place. `timing`
    (FOLD_SECONDS_KEY, FOLD_RESIDUES_KEY of this job) goes into the file's key-value metadata: the report's
    throughput plot reads it there, from a declared input."""
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    output.parent.mkdir(parents=True, exist_ok=True)
    schema = PREDICTIONS.with_metadata(timing) if timing else PREDICTIONS
    with pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=STATISTICS_COLUMNS) as writer:
        if not records:
            writer.write_table(PREDICTIONS.empty_table())
        for start in range(0, len(records), FINAL_ROW_GROUP):
            group = records[start : start + FINAL_ROW_GROUP]
            table = pa.concat_tables([done[r.checksum] for r in group])
            table = table.set_column(0, "id", pa.array([r.id for r in group], pa.string()))
            for name, value in (("drop", drop), ("chunk", chunk)):
                column = pa.array([value] * len(group), pa.string())
                table = table.set_column(PREDICTIONS.get_field_index(name), name, column)
            writer.write_table(table.combine_chunks())
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, output)


# ---- command line ----
def parse_args(argv: list[str]) -> argparse.Namespace:
    from atlas.config import schema_defaults

    defaults = schema_defaults()  # the config schema's, defined there once
    parser = argparse.ArgumentParser(prog="atlas fold", description="Fold one chunk FASTA with ESMFold.")
    parser.add_argument("--fasta", required=True, type=Path, help="chunk FASTA")
    parser.add_argument("--output", required=True, type=Path, help="predictions Parquet to write")
    parser.add_argument("--drop", required=True, help="drop name (written to the `drop` column)")
    parser.add_argument("--chunk", required=True, help="chunk name (written to the `chunk` column)")
    parser.add_argument(
        "--model", default=defaults.get("model"), help="hub id (local cache), directory or tiny"
    )
    parser.add_argument("--device", default=defaults.get("device"), help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--num-recycles", type=int, default=None, help="ESMFold recycles (default: the model's)"
    )
    parser.add_argument(
        "--trunk-chunk-size",
        type=lambda text: None if text == "auto" else int(text),
        default=None,
        help="an integer, or auto (default): chosen by length",
    )
    parser.add_argument(
        "--lm-precision", default=defaults.get("lm_precision"), choices=("auto", "bf16", "fp16", "fp32")
    )
    parser.add_argument(
        "--max-tokens-per-batch", type=int, default=defaults.get("max_tokens_per_batch"), help="B x Lmax"
    )
    parser.add_argument(
        "--max-pair-cells-per-batch",
        type=int,
        default=defaults.get("max_pair_cells_per_batch"),
        help="bound on B x Lmax^2",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--store-pae",
        type=int,
        choices=(0, 1),
        default=0,
        help="1: keep each sequence's PAE matrix (uint8, 0.5 A steps) in the pae column",
    )
    parser.add_argument(
        "--structure-format",
        default=defaults.get("structure_format"),
        choices=("foldcomp", "mmcif"),
        help="how to store structures: Foldcomp (checked round trip, else mmCIF) or mmCIF text",
    )
    args = parser.parse_args(argv)
    for name in ("max_tokens_per_batch", "max_pair_cells_per_batch", "threads", "trunk_chunk_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.num_recycles is not None and args.num_recycles < 0:
        parser.error("--num-recycles must not be negative")
    return args


def read_entries(fasta: Path) -> tuple[list[Entry], list[Entry]]:
    """(every record in FASTA order, one entry per distinct checksum)."""
    records, unique = [], {}
    for index, record in enumerate(read_fasta(fasta)):
        sequence = record.sequence.upper()
        entry = Entry(index, record.id, sequence, sequence_checksum(sequence))
        records.append(entry)
        unique.setdefault(entry.checksum, entry)
    return records, list(unique.values())


def _software_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("metagenomic-atlas")
    except Exception:  # noqa: BLE001
        return None


def fold_main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
        )
    log.setLevel(logging.INFO)
    output: Path = args.output
    if output.exists():
        log.info("%s exists; nothing to do", output)
        return 0
    started = time.monotonic()

    import torch

    from atlas.model import ModelLoadError, load_model, resolve_model, source_max_recycles

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        source = resolve_model(args.model)
        max_recycles = source_max_recycles(source)
    except ModelLoadError as error:
        log.error("%s", error)
        return 1
    num_recycles = args.num_recycles if args.num_recycles is not None else max_recycles - 1

    records, unique = read_entries(args.fasta)
    parts_dir = parts_dir_for(output)
    for stale in [*output.parent.glob(f".{output.name}.*.tmp"), *parts_dir.glob(".part-*.tmp")]:
        stale.unlink(missing_ok=True)  # temporary files of a killed run
    done = read_parts(parts_dir, source.name, num_recycles, {e.checksum for e in unique})
    todo = [e for e in unique if e.checksum not in done]
    log.info(
        "chunk %s/%s: %d records, %d distinct sequences, %d already in %s, %d to fold; model %s, %d recycles",
        args.drop,
        args.chunk,
        len(records),
        len(unique),
        len(done),
        parts_dir.name,
        len(todo),
        source.name,
        num_recycles,
    )

    stats = FoldStats()
    if todo:
        try:
            loaded = load_model(args.model, args.device, args.lm_precision)
        except ModelLoadError as error:
            log.error("%s", error)
            return 1
        from atlas.model import model_summary

        log.info("loaded %s", model_summary(loaded))
        folder = Folder(
            loaded=loaded,
            num_recycles=num_recycles,
            max_tokens=args.max_tokens_per_batch,
            max_pair_cells=args.max_pair_cells_per_batch,
            trunk_chunk_size=args.trunk_chunk_size,
            drop=args.drop,
            chunk=args.chunk,
            software_version=_software_version(),
            structure_format=args.structure_format,
            batching=loaded.device.type != "cpu",
            store_pae=bool(args.store_pae),
            stats=stats,
        )
        if not folder.batching:
            log.info("on CPU: one sequence per forward (batches are slower there: bench/fold_throughput.py)")
        try:
            fold_all(folder, todo, parts_dir, done)
        except FatalDeviceError as error:
            log.error("device error, stopping: %s; results so far in %s, a rerun resumes", error, parts_dir)
            return 1

    missing = [e.id for e in unique if e.checksum not in done]
    if missing:  # cannot happen: every entry gets a row; guard against losing sequences silently
        log.error("no row for %d sequences (%s...); parts kept in %s", len(missing), missing[:3], parts_dir)
        return 1
    timing = {FOLD_SECONDS_KEY: repr(stats.seconds), FOLD_RESIDUES_KEY: str(stats.residues)}
    write_final(output, records, done, args.drop, args.chunk, timing if stats.seconds > 0 else None)
    shutil.rmtree(parts_dir, ignore_errors=True)

    elapsed = time.monotonic() - started
    statuses = [done[e.checksum].column("status")[0].as_py() for e in unique]
    means = [done[e.checksum].column("mean_plddt")[0].as_py() for e in unique]
    means = [m for m in means if m is not None]
    summary = {
        "sequences": len(unique),
        "records": len(records),
        "folded": stats.folded,
        "resumed": len(unique) - len(todo),
        "ok": statuses.count("ok"),
        "failed": statuses.count("failed"),
        "mean_plddt": round(float(np.mean(means)), 2) if means else None,
        "residues_per_s": round(stats.residues / stats.seconds, 1) if stats.seconds > 0 else None,
        "padding_efficiency": round(stats.real / stats.padded, 3) if stats.padded else None,
        "forward_batches": stats.forwards,
        "oom_events": stats.oom_events,
        "mmcif_fallbacks": stats.mmcif_fallbacks,
        "elapsed_s": round(elapsed, 1),
    }
    print(
        f"fold summary {args.drop}/{args.chunk}: " + " ".join(f"{k}={v}" for k, v in summary.items()),
        file=sys.stderr,
        flush=True,
    )
    return 0


def fold_all(
    folder: Folder,
    todo: list[Entry],
    parts_dir: Path,
    done: dict[str, pa.Table],
) -> None:
    from tqdm import tqdm

    total_residues = sum(len(e.sequence) for e in todo)
    interactive = sys.stderr.isatty()
    progress = tqdm(
        total=total_residues,
        unit="res",
        unit_scale=True,
        desc=f"fold {folder.chunk}",
        file=sys.stderr,
        mininterval=0.5 if interactive else 30.0,
        dynamic_ncols=interactive,
        ascii=not interactive,
    )
    sequences_done = 0
    started = time.monotonic()
    with progress:
        for batch in folder.plan(todo):
            rows = folder.fold_batch(batch)
            write_part(parts_dir, rows)
            folder.stats.folded += len(rows)
            folder.stats.residues += sum(row["length"] for row in rows)
            table = _rows_table(rows)
            for i, row in enumerate(rows):
                done[row["checksum"]] = table.slice(i, 1)
            sequences_done += len(batch)
            folder.stats.seconds = time.monotonic() - started
            progress.update(sum(len(e.sequence) for e in batch))
            progress.set_postfix(
                seqs=f"{sequences_done}/{len(todo)}",
                failed=folder.stats.failed,
                pad_eff=f"{folder.stats.real / max(folder.stats.padded, 1):.2f}",
                refresh=False,
            )
    log.info(
        "folded %d sequences in %d forward batches, padding efficiency %.3f (real / padded residues), "
        "%d out-of-memory retries",
        folder.stats.folded,
        folder.stats.forwards,
        folder.stats.real / max(folder.stats.padded, 1),
        folder.stats.oom_events,
    )
