"""Fold throughput: residues/s and padded-compute waste of batching strategies, same model, same sequences.

(a) naive: one forward per sequence, in input order;
(b) esm-fold: esm's scripts/fold.py batching (sequences sorted by length, greedy batches of up to
    --esm-max-tokens raw residues, 1024 by default, no pair bound), trunk chunk size as given (esm's default
    none);
(c) atlas: `atlas fold` batching (longest first, B x Lmax <= --max-tokens-per-batch and
    B x Lmax^2 <= --max-pair-cells-per-batch) with its length-based trunk chunk size: what `atlas fold`
    runs on a GPU. On CPU `atlas fold` folds one sequence per forward, longest first (atlas-cpu).

Every strategy runs the same forward code (atlas.fold.Folder._forward: model forward, per-sequence pTM and
PAE, results to host memory); mmCIF writing and Parquet are left out. Lengths are drawn from a log-normal
like MGnify proteins (median ~200, long tail, clipped to --max-length), residues from UniProt background
frequencies, seeded.

CPU (tiny model, a minute or two):
    python bench/fold_throughput.py --n 48 --max-length 400
GPU, esmfold_v1's dimensions with random weights (ESM-2 3B: 36 x 2560; trunk 48 blocks, 1024/128):
    python bench/fold_throughput.py --full-size --device cuda --n 256 --max-length 1280
    (--lm-layers / --lm-hidden shrink the language model where GPU memory is short)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atlas.fold import Entry, Folder, default_chunk_size  # noqa: E402
from atlas.model import (  # noqa: E402
    LoadedModel,
    build_random_model,
    full_size_config,
    load_model,
    prepare_model,
    resolve_device,
    resolve_lm_dtype,
)

# UniProtKB/Swiss-Prot amino-acid composition (%)
AA_FREQ = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27,
    "I": 5.96, "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08,
    "Y": 2.92, "V": 6.87,
}  # fmt: skip


def mgnify_like(n: int, max_length: int, median: float, sigma: float, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(math.log(median), sigma, n)), 16, max_length).astype(int)
    letters = np.array(list(AA_FREQ))
    p = np.array(list(AA_FREQ.values()))
    p = p / p.sum()
    return ["".join(rng.choice(letters, size=length, p=p)) for length in lengths]


def naive_batches(entries: list[Entry]) -> list[list[Entry]]:
    return [[e] for e in entries]


def esm_batches(entries: list[Entry], max_tokens: int) -> list[list[Entry]]:
    """esm scripts/fold.py: sort by length, then create_batched_sequence_datasest (raw residues per batch)."""
    batches, batch, tokens = [], [], 0
    for entry in sorted(entries, key=lambda e: len(e.sequence)):
        if tokens + len(entry.sequence) > max_tokens and tokens > 0:
            batches.append(batch)
            batch, tokens = [], 0
        batch.append(entry)
        tokens += len(entry.sequence)
    if batch:
        batches.append(batch)
    return batches


def waste(batches: list[list[Entry]]) -> dict:
    """Padded compute: 1 - real / padded residues (B x Lmax) and pair cells (B x Lmax^2)."""
    real = padded = real_pair = padded_pair = 0
    for batch in batches:
        lmax = max(len(e.sequence) for e in batch)
        real += sum(len(e.sequence) for e in batch)
        padded += len(batch) * lmax
        real_pair += sum(len(e.sequence) ** 2 for e in batch)
        padded_pair += len(batch) * lmax**2
    return {
        "batches": len(batches),
        "residues": real,
        "token_waste": 1 - real / padded,
        "pair_waste": 1 - real_pair / padded_pair,
    }


def run(folder: Folder, batches: list[list[Entry]], chunk_size) -> dict:
    if folder.loaded.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    outputs = []
    for batch in batches:
        lmax = max(len(e.sequence) for e in batch)
        # results are copied to the host: synchronous
        outputs += zip(batch, folder._forward(batch, chunk_size(lmax)), strict=True)
    seconds = time.perf_counter() - started
    result = waste(batches)
    result.update(seconds=seconds, residues_per_s=result["residues"] / seconds, outputs=outputs)
    return result


def storing_seconds(folder: Folder, outputs: list) -> tuple[float, int]:
    """CPU seconds of the fold step's work after the network (atlas.fold.Folder.ok_row: the structure
    stored as Foldcomp with its round-trip check, or mmCIF) over these outputs, and how many were finite. A
    fold job does it between two GPU batches: the GPU waits that long."""
    started = time.process_time()
    finite = [(entry, result) for entry, result in outputs if Folder._finite(result)]
    for entry, result in finite:
        folder.ok_row(entry, result)
    return time.process_time() - started, len(finite)


def build(args) -> LoadedModel:
    if not args.full_size:
        return load_model("tiny", args.device, args.lm_precision)
    device = resolve_device(args.device)
    lm_dtype = resolve_lm_dtype(args.lm_precision, device)
    config = full_size_config(args.lm_layers, args.lm_hidden, args.lm_heads)
    print(f"building esmfold_v1-sized model (LM {args.lm_layers} x {args.lm_hidden}) ...", file=sys.stderr)
    model = prepare_model(build_random_model(config), device, lm_dtype)
    name = f"random-esmfold-v1-size-lm{args.lm_layers}x{args.lm_hidden}"
    return LoadedModel(model, name, device, lm_dtype, int(config.esmfold_config.trunk.max_recycles))


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=48, help="number of sequences")
    parser.add_argument("--max-length", type=int, default=400, help="longest sequence (MGnify-like: 1280)")
    parser.add_argument("--median", type=float, default=200.0)
    parser.add_argument("--sigma", type=float, default=0.6, help="log-normal sigma of the lengths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lm-precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    parser.add_argument("--num-recycles", type=int, default=None, help="default: the model's (3)")
    parser.add_argument("--max-tokens-per-batch", type=int, default=4096)
    parser.add_argument("--max-pair-cells-per-batch", type=int, default=1 << 20)
    parser.add_argument("--esm-max-tokens", type=int, default=1024, help="esm-fold --max-tokens-per-batch")
    parser.add_argument("--esm-chunk-size", type=int, default=None, help="esm-fold --chunk-size")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--full-size", action="store_true", help="esmfold_v1 dimensions, random weights")
    parser.add_argument("--lm-layers", type=int, default=36)
    parser.add_argument("--lm-hidden", type=int, default=2560)
    parser.add_argument("--lm-heads", type=int, default=40)
    parser.add_argument("--strategies", default="naive,esm,atlas,atlas-cpu")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the best run counts")
    parser.add_argument("--plan-only", action="store_true", help="batches and padding waste only, no model")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    sequences = mgnify_like(args.n, args.max_length, args.median, args.sigma, args.seed)
    entries = [Entry(i, f"seq{i}", s, str(i)) for i, s in enumerate(sequences)]
    lengths = np.array([len(s) for s in sequences])
    if args.plan_only:
        print(
            f"{args.n} sequences, {lengths.sum()} residues, length median {int(np.median(lengths))}, "
            f"p90 {int(np.percentile(lengths, 90))}, max {lengths.max()}"
        )
        planner = Folder(None, 0, args.max_tokens_per_batch, args.max_pair_cells_per_batch)
        plans = {
            "naive": naive_batches(entries),
            "esm": esm_batches(entries, args.esm_max_tokens),
            "atlas": list(planner.plan(entries)),
        }
        print("{:<10} {:>7} {:>12} {:>11}".format("strategy", "batches", "token waste", "pair waste"))
        for name, batches in plans.items():
            w = waste(batches)
            print(f"{name:<10} {w['batches']:>7} {w['token_waste']:>12.1%} {w['pair_waste']:>11.1%}")
        return 0

    loaded = build(args)
    recycles = args.num_recycles if args.num_recycles is not None else loaded.max_recycles - 1
    dtype = str(loaded.lm_dtype).removeprefix("torch.")
    p90 = int(np.percentile(lengths, 90))
    print(
        f"model {loaded.name} on {loaded.device} (LM {dtype}), {recycles} recycles, "
        f"threads {torch.get_num_threads()}; {args.n} sequences, {lengths.sum()} residues, "
        f"length median {int(np.median(lengths))}, p90 {p90}, max {lengths.max()}"
    )
    folder = Folder(loaded, recycles, args.max_tokens_per_batch, args.max_pair_cells_per_batch)
    folder._forward([Entry(0, "warmup", sequences[0][:32], "w")], None)  # warm-up (allocator, kernels)

    plans = {
        "naive": (naive_batches(entries), lambda lmax: args.esm_chunk_size),
        "esm": (esm_batches(entries, args.esm_max_tokens), lambda lmax: args.esm_chunk_size),
        "atlas": (list(folder.plan(entries)), default_chunk_size),
        "atlas-cpu": (
            list(Folder(loaded, recycles, 1, 1, batching=False).plan(entries)),
            default_chunk_size,
        ),
    }
    names = args.strategies.split(",")
    results: dict[str, dict] = {}
    for repeat in range(args.repeats):  # interleaved, best of: robust to other load on the machine
        for name in names:
            batches, chunk_size = plans[name]
            r = run(folder, batches, chunk_size)
            print(
                f"  [{repeat + 1}/{args.repeats}] {name:<9} {r['batches']:>5} batches {r['seconds']:>8.1f} s "
                f"{r['residues_per_s']:>9.1f} res/s",
                file=sys.stderr,
                flush=True,
            )
            if name not in results or r["seconds"] < results[name]["seconds"]:
                results[name] = r
    header = ("strategy", "batches", "seconds", "res/s", "token waste", "pair waste")
    print("{:<10} {:>7} {:>8} {:>9} {:>12} {:>11}  vs naive".format(*header))
    for name in names:
        r = results[name]
        naive = results.get("naive", {}).get("residues_per_s", float("nan"))
        ratio = r["residues_per_s"] / naive
        print(
            f"{name:<10} {r['batches']:>7} {r['seconds']:>8.1f} {r['residues_per_s']:>9.1f} "
            f"{r['token_waste']:>12.1%} {r['pair_waste']:>11.1%}  {ratio:.2f}x"
        )
    for ours in ("atlas", "atlas-cpu"):
        if ours in results and "esm" in results:
            ratio = results[ours]["residues_per_s"] / results["esm"]["residues_per_s"]
            print(f"{ours} / esm: {ratio:.2f}x")
    ours = next((name for name in ("atlas", "atlas-cpu") if name in results), None)
    if ours:
        seconds, stored = storing_seconds(folder, results[ours]["outputs"])
        print(
            f"storing the structures after the network ({ours}, {stored} finite of {args.n}): {seconds:.2f}"
            f" CPU-s, {seconds / results[ours]['seconds']:.1%} of the forward time, which the GPU waits in"
            f" a fold job ({folder.stats.mmcif_fallbacks} kept as mmCIF: random weights' chains)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
