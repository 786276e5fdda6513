"""The chunk FASTAs of a drop packed into a fixed number of shard files, for runs without a shared filesystem.

With remote storage (S3, GCS, ... as Snakemake's default storage) every file a job reads must be a declared
output of some job, and a checkpoint cannot declare files whose names it learns only while running (chunk
names are keyed by content). So there the split declares its manifest and `SHARDS` shard files, named in
advance; each chunk FASTA is then an ordinary per-chunk output, cut out of its shard by `extract_chunk`.

A shard is a Parquet file of rows (chunk, fasta): one row per chunk, holding the chunk FASTA's bytes exactly
as the split writes them locally, one row group per chunk, so reading one chunk reads one row group (plus
the footer). Which shard holds a chunk follows from the drop's sorted chunk list alone (`shard_chunks`): the
split and the workflow's input functions compute it the same way from the manifest.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

SHARDS = 16  # shard files per drop: a drop at max_chunks_per_drop 2000 puts 125 chunks in each
SHARD_MIN_CHUNKS = 64  # a small drop fills its first shard before using the next (the others stay empty)


def shard_chunks(chunks: Sequence[str], shards: int = SHARDS) -> list[list[str]]:
    """The chunks of each shard: consecutive runs of the sorted chunk names."""
    names = sorted(chunks)
    per_shard = max(SHARD_MIN_CHUNKS, math.ceil(len(names) / shards))
    return [names[start : start + per_shard] for start in range(0, per_shard * shards, per_shard)]


def _schema():
    import pyarrow as pa

    return pa.schema([("chunk", pa.string()), ("fasta", pa.large_binary())])


def write_shards(chunk_dir: Path, chunks: Sequence[str], shards: Sequence[Path]) -> None:
    """Pack `chunk_dir/{chunk}.fasta` into the shard files `shards` (as many as SHARDS), one chunk in memory
    at a time; each shard is written aside and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema()
    for names, shard in zip(shard_chunks(chunks, len(shards)), shards, strict=True):
        shard = Path(shard)
        shard.parent.mkdir(parents=True, exist_ok=True)
        temporary = shard.with_name(f".{shard.name}.tmp")
        # sequences are already zstd-friendly text; level 1 keeps the pack about as fast as the copy
        with pq.ParquetWriter(temporary, schema, compression="zstd", compression_level=1) as writer:
            if not names:
                writer.write_table(schema.empty_table())
            for name in names:
                data = (chunk_dir / f"{name}.fasta").read_bytes()
                writer.write_table(pa.table({"chunk": [name], "fasta": [data]}, schema=schema))
        os.replace(temporary, shard)


def extract_chunk(shard: str | Path, chunk: str, output: str | Path) -> int:
    """Write chunk `chunk` of `shard` to `output` (the bytes the split wrote); returns their size. Reads the
    chunk's row group only."""
    import pyarrow.parquet as pq

    file = pq.ParquetFile(shard)
    names = file.read(columns=["chunk"]).column("chunk").to_pylist()
    if chunk not in names:
        raise KeyError(f"{shard}: holds no chunk {chunk!r} (it holds {len(names)} chunks)")
    # one chunk per row group, in order (write_shards)
    data = file.read_row_group(names.index(chunk), columns=["fasta"]).column("fasta")[0].as_py()
    output = Path(output)
    temporary = output.with_name(f".{output.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, output)
    return len(data)
