"""Clusters of the confident predictions at 30% identity, as the ESM Atlas made them, grown drop by drop.

`atlas cluster-drop --manifest M --predictions-dir D [--previous STATE] --members MEMBERS --state STATE`
    The drop's confident predictions (status ok, mean pLDDT >= min_plddt, pTM >= min_ptm) are clustered with
    `mmseqs linclust --kmer-per-seq 100 --cluster-mode 2 --cov-mode 1 -c 0.8 --min-seq-id 0.3` for the first
    drop; a later drop is added to the previous drop's clustering with `mmseqs clusterupdate` (the same
    clustering options): its sequences join existing clusters or open new ones, earlier members keep their
    cluster, and nothing earlier is reclustered. STATE (an uncompressed tar, one file so that it travels
    through remote storage like any output) holds the cumulative sequence and cluster databases the next
    drop updates. MEMBERS (`members.parquet`) holds the drop's confident sequences only
    (atlas.tables.CLUSTER_MEMBERS): a sequence's cluster never changes afterwards, so the cluster table is
    the union of the drops' files.

`atlas clusters-table --members-dir DIR --drops D1 D2 ... --output clusters.parquet`
    The union of the drops' members (DuckDB, streaming) with, per cluster, its size and its representative:
    the member with the best pTM x pLDDT (ties: smaller checksum), as in the ESM Atlas' high-quality set.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from atlas.novelty import MmseqsError, find_mmseqs, run_mmseqs
from atlas.tables import high_confidence

SEQUENCES = "sequences"
CLUSTERING = "clusters"


def _log(message: str) -> None:
    print(f"[atlas] {message}", file=sys.stderr, flush=True)


def cluster_options(min_seq_id: float, coverage: float, kmer_per_seq: int, threads: int) -> list:
    return [
        "--kmer-per-seq", kmer_per_seq,
        "--cluster-mode", "2",
        "--cov-mode", "1",
        "-c", coverage,
        "--min-seq-id", min_seq_id,
        "--threads", max(1, threads),
    ]  # fmt: skip


def confident_sequences(
    manifest: str | Path, predictions_dir: str | Path, min_plddt: float, min_ptm: float
) -> Iterator[pa.Table]:
    """checksum, sequence, score of the drop's confident predictions, a table per chunk of its manifest."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    chunks = pq.read_table(manifest, columns=["chunk"]).column("chunk").drop_null().unique().to_pylist()
    for chunk in sorted(chunks):
        table = pq.read_table(
            Path(predictions_dir) / f"{chunk}.parquet",
            columns=["checksum", "sequence", "status", "mean_plddt", "ptm"],
        )
        table = table.filter(high_confidence(table, min_plddt, min_ptm))
        score = pc.divide(pc.multiply(table["ptm"], table["mean_plddt"]), 100.0)
        yield pa.table([table["checksum"], table["sequence"], pc.cast(score, pa.float32())], schema=CONFIDENT)


CONFIDENT = pa.schema([("checksum", pa.string()), ("sequence", pa.string()), ("score", pa.float32())])


def _stage_sequences(confident: Iterable[pa.Table], fasta: Path, scores: Path) -> int:
    """Stream the sequences into a FASTA and their scores into a Parquet file; returns how many."""
    import pyarrow.parquet as pq

    count = 0
    with open(fasta, "w") as handle, pq.ParquetWriter(scores, SCORES) as writer:
        for table in confident:
            for checksum, sequence in zip(
                table["checksum"].to_pylist(), table["sequence"].to_pylist(), strict=True
            ):
                handle.write(f">{checksum}\n{sequence}\n")
            writer.write_table(table.select(["checksum", "score"]).cast(SCORES))
            count += table.num_rows
    return count


SCORES = pa.schema([("checksum", pa.string()), ("score", pa.float32())])


def _write_members(tsv: Path, scores: Path, drop: str, members: Path) -> tuple[int, int]:
    """Join the drop's scores with the clustering (representative, member TSV) into members; (rows, clusters).

    DuckDB does the join, so memory stays bounded however many sequences the drop or the clustering holds."""
    import duckdb

    from atlas.sql import sql_string

    members.parent.mkdir(parents=True, exist_ok=True)
    tmp = members.with_name(f".{members.name}.tmp")
    connection = duckdb.connect()
    try:
        connection.execute(
            f"""
            CREATE TEMP VIEW joined AS
            SELECT s.checksum, {sql_string(drop)} AS "drop", c.cluster, s.score
            FROM read_parquet({sql_string(str(scores))}) s
            LEFT JOIN read_csv({sql_string(str(tsv))}, delim = '\t', header = false, auto_detect = false,
                               columns = {{'cluster': 'VARCHAR', 'member': 'VARCHAR'}}) c
              ON c.member = s.checksum
            """
        )
        missing = connection.execute(
            "SELECT count(*), min(checksum) FROM joined WHERE cluster IS NULL"
        ).fetchone()
        if missing[0]:
            raise MmseqsError(
                f"MMseqs2 left {missing[0]} sequences of drop {drop} unclustered, e.g. {missing[1]}"
            )
        connection.execute(f"COPY (SELECT * FROM joined) TO {sql_string(str(tmp))} (FORMAT parquet)")
        rows, clusters = connection.execute(
            f"SELECT count(*), count(DISTINCT cluster) FROM read_parquet({sql_string(str(tmp))})"
        ).fetchone()
    finally:
        connection.close()
    tmp.replace(members)
    return rows, clusters


def cluster_drop(
    confident: Iterable[pa.Table],
    drop: str,
    previous: str | Path | None,
    members: str | Path,
    state: str | Path,
    min_seq_id: float = 0.3,
    coverage: float = 0.8,
    kmer_per_seq: int = 100,
    threads: int = 1,
) -> dict:
    """Cluster (first drop) or add to the previous clustering (later drops); write members and state."""
    binary = find_mmseqs()
    members, state = Path(members), Path(state)
    options = cluster_options(min_seq_id, coverage, kmer_per_seq, threads)
    state.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{state.name}.tmp-", dir=state.parent))
    workdir = Path(tempfile.mkdtemp(prefix=".cluster-work-", dir=staging))
    try:
        if previous:
            with tarfile.open(previous) as archive:
                archive.extractall(workdir / "previous", filter="data")
            previous = workdir / "previous"
        fasta, scores, tsv = workdir / "new.fasta", workdir / "scores.parquet", workdir / "clusters.tsv"
        count = _stage_sequences(confident, fasta, scores)
        new_db = workdir / "new"
        if count:
            run_mmseqs(binary, ["createdb", fasta, new_db, "--dbtype", "1"])
        previous_db = Path(previous) / SEQUENCES if previous else None
        has_previous = previous_db is not None and Path(f"{previous_db}.dbtype").is_file()
        if has_previous and count:
            combined = workdir / "combined"
            run_mmseqs(binary, ["concatdbs", previous_db, new_db, combined, "--threads", "1"])
            run_mmseqs(
                binary, ["concatdbs", f"{previous_db}_h", f"{new_db}_h", f"{combined}_h", "--threads", "1"]
            )
            run_mmseqs(
                binary,
                [
                    "clusterupdate", previous_db, combined, Path(previous) / CLUSTERING,
                    staging / SEQUENCES, staging / CLUSTERING, workdir / "tmp", *options,
                ],
            )  # fmt: skip
        elif has_previous:  # nothing confident in this drop: the state is the previous one
            for path in Path(previous).iterdir():
                if path.is_file():
                    shutil.copy2(path, staging / path.name)
        elif count:
            run_mmseqs(binary, ["createdb", fasta, staging / SEQUENCES, "--dbtype", "1"])
            run_mmseqs(
                binary, ["linclust", staging / SEQUENCES, staging / CLUSTERING, workdir / "tmp", *options]
            )
        if count:
            db = staging / SEQUENCES
            run_mmseqs(binary, ["createtsv", db, db, staging / CLUSTERING, tsv, "--threads", "1"])
        else:
            tsv.write_text("")
        rows, clusters = _write_members(tsv, scores, drop, members)
        shutil.rmtree(workdir)
        packed = state.with_name(f".{state.name}.tmp")
        with tarfile.open(packed, "w") as archive:
            for path in sorted(staging.iterdir()):
                archive.add(path, arcname=path.name)
        packed.replace(state)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = {"sequences": rows, "clusters_joined_or_opened": clusters}
    _log(f"wrote {members}: {counts}")
    return counts


def clusters_table(member_files: list[Path], output: str | Path) -> int:
    """Write the union of the members with cluster size and representative; returns the row count."""
    import duckdb

    from atlas.sql import sql_string

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    files = ", ".join(sql_string(str(path)) for path in member_files)
    connection = duckdb.connect()
    try:
        connection.execute(
            f"""
            COPY (
              SELECT checksum, "drop", cluster, score,
                     count(*) OVER (PARTITION BY cluster) AS cluster_size,
                     row_number() OVER (PARTITION BY cluster ORDER BY score DESC, checksum) = 1
                       AS representative
              FROM read_parquet([{files}])
              ORDER BY cluster, checksum
            ) TO {sql_string(str(tmp))} (FORMAT parquet)
            """
        )
        rows = connection.execute(f"SELECT count(*) FROM read_parquet({sql_string(str(tmp))})").fetchone()[0]
    finally:
        connection.close()
    tmp.replace(output)
    return rows


def cluster_drop_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas cluster-drop", description="cluster one drop's confident predictions"
    )
    parser.add_argument("--manifest", required=True, help="the drop's manifest (names its chunks)")
    parser.add_argument("--predictions-dir", required=True, help="folder of the drop's predictions Parquet")
    parser.add_argument("--previous", help="the previous drop's cluster state (tar)")
    parser.add_argument("--members", required=True, help="members Parquet to write")
    parser.add_argument("--state", required=True, help="cluster state (tar) to write")
    parser.add_argument("--min-plddt", type=float, required=True)
    parser.add_argument("--min-ptm", type=float, required=True)
    parser.add_argument("--min-seq-id", type=float, required=True)
    parser.add_argument("--coverage", type=float, required=True)
    parser.add_argument("--kmer-per-seq", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    drop = Path(args.predictions_dir).name
    try:
        confident = confident_sequences(args.manifest, args.predictions_dir, args.min_plddt, args.min_ptm)
        cluster_drop(
            confident,
            drop,
            args.previous,
            args.members,
            args.state,
            min_seq_id=args.min_seq_id,
            coverage=args.coverage,
            kmer_per_seq=args.kmer_per_seq,
            threads=args.threads,
        )
    except (MmseqsError, OSError, ValueError) as error:
        print(f"atlas cluster-drop: error: {error}", file=sys.stderr)
        return 1
    return 0


def clusters_table_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas clusters-table", description="the cluster table of every drop"
    )
    parser.add_argument(
        "--members-dir", required=True, help="clusters/ folder holding {drop}/members.parquet"
    )
    parser.add_argument("--drops", nargs="+", required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    files = [Path(args.members_dir) / drop / "members.parquet" for drop in args.drops]
    try:
        rows = clusters_table(files, args.output)
    except (OSError, ValueError) as error:
        print(f"atlas clusters-table: error: {error}", file=sys.stderr)
        return 1
    _log(f"wrote {args.output}: {rows} rows")
    return 0
