"""Clusters at 30% identity over real MGnify proteins, grown drop by drop with MMseqs2 clusterupdate."""

from __future__ import annotations

import random
import subprocess
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from atlas import clusters
from atlas.cli import main as atlas_main
from atlas.fasta import read_fasta, sequence_checksum
from atlas.novelty import find_mmseqs
from atlas.tables import CLUSTER_MEMBERS, CLUSTERS, MANIFEST, PREDICTIONS

AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"


def mutate(sequence: str, identity: float, rng: random.Random) -> str:
    residues = list(sequence)
    for position in rng.sample(range(len(residues)), round((1 - identity) * len(residues))):
        residues[position] = rng.choice([aa for aa in AMINO_ACIDS if aa != residues[position]])
    return "".join(residues)


@pytest.fixture(scope="module")
def mgnify(test_data) -> list[str]:
    sequences, seen = [], set()
    for record in read_fasta(test_data / "mgnifam_all_seqs_concat.fa"):
        sequence = record.sequence.upper()
        if 50 <= len(sequence) <= 400 and set(sequence) <= set(AMINO_ACIDS) and sequence not in seen:
            seen.add(sequence)
            sequences.append(sequence)
    return sequences[:240]


def confident_table(sequences: list[str], rng: random.Random) -> pa.Table:
    return pa.table(
        {
            "checksum": [sequence_checksum(sequence) for sequence in sequences],
            "sequence": sequences,
            "score": [round(rng.uniform(0.5, 0.95), 3) for _ in sequences],
        },
        schema=clusters.CONFIDENT,
    )


def columns(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    """Names and types (DuckDB marks some columns NOT NULL, which pyarrow's schema equality compares)."""
    return [(field.name, field.type) for field in schema]


def state_assignment(state: Path, tmp_path: Path) -> dict[str, str]:
    tsv = tmp_path / f"{state.parent.name}.tsv"
    binary = find_mmseqs()
    with tarfile.open(state) as archive:  # the state is one tar file
        archive.extractall(tmp_path / f"{state.parent.name}-state", filter="data")
    state = tmp_path / f"{state.parent.name}-state"
    db = state / clusters.SEQUENCES
    subprocess.run(
        [binary, "createtsv", db, db, state / clusters.CLUSTERING, tsv], check=True, capture_output=True
    )
    return dict(reversed(line.split("\t")[:2]) for line in tsv.read_text().splitlines())


def test_clusters_grow_drop_by_drop(tmp_path, mgnify):
    rng = random.Random(3)
    first = mgnify[:160]
    drop1 = confident_table(first, rng)
    out = tmp_path / "clusters"
    counts = clusters.cluster_drop(
        [drop1], "d1", None, out / "d1" / "members.parquet", out / "d1" / "state.tar"
    )
    members1 = pq.read_table(out / "d1" / "members.parquet")
    assert columns(members1.schema) == columns(CLUSTER_MEMBERS)
    assert members1.num_rows == 160 == counts["sequences"]
    assignment1 = dict(zip(members1["checksum"].to_pylist(), members1["cluster"].to_pylist(), strict=True))
    # a cluster id is the checksum of a member that is its own cluster's id (the MMseqs2 representative)
    assert all(assignment1[cluster] == cluster for cluster in assignment1.values())
    assert len(set(assignment1.values())) < 160  # MGnifam families share clusters

    # drop 2: unseen MGnify proteins, and close variants (95% identity) of three drop-1 representatives
    representatives = [
        index for index, sequence in enumerate(first) if sequence_checksum(sequence) in assignment1.values()
    ]
    picked = representatives[:: max(1, len(representatives) // 3)][:3]
    variants = [mutate(first[index], 0.95, rng) for index in picked]
    drop2 = confident_table(mgnify[160:240] + variants, rng)
    clusters.cluster_drop(
        [drop2], "d2", out / "d1" / "state.tar", out / "d2" / "members.parquet", out / "d2" / "state.tar"
    )
    members2 = pq.read_table(out / "d2" / "members.parquet")
    assert members2.num_rows == 83 and set(members2["drop"].to_pylist()) == {"d2"}
    assignment2 = dict(zip(members2["checksum"].to_pylist(), members2["cluster"].to_pylist(), strict=True))
    for index, variant in zip(picked, variants, strict=True):
        assert assignment2[sequence_checksum(variant)] == assignment1[sequence_checksum(first[index])]

    # the cumulative clustering keeps every drop-1 assignment: nothing earlier was reclustered
    cumulative = state_assignment(out / "d2" / "state.tar", tmp_path)
    assert {checksum: cumulative[checksum] for checksum in assignment1} == assignment1
    assert {checksum: cumulative[checksum] for checksum in assignment2} == assignment2

    # the table: one representative per cluster, the best pTM x pLDDT
    table_path = tmp_path / "clusters.parquet"
    argv = ["clusters-table", "--members-dir", str(out), "--drops", "d1", "d2", "--output", str(table_path)]
    assert atlas_main(argv) == 0
    table = pq.read_table(table_path)
    assert columns(table.schema) == columns(CLUSTERS)
    rows = table.to_pylist()
    assert len(rows) == 243
    by_cluster: dict[str, list[dict]] = {}
    for row in rows:
        by_cluster.setdefault(row["cluster"], []).append(row)
    for members in by_cluster.values():
        representatives = [row for row in members if row["representative"]]
        assert len(representatives) == 1
        assert representatives[0]["score"] == max(row["score"] for row in members)
        assert all(row["cluster_size"] == len(members) for row in members)


def test_confident_sequences_follow_the_thresholds(tmp_path, mgnify):
    """Only ok predictions at or above both thresholds are clustered, from the chunks the manifest names."""
    metrics = [
        (80.0, 0.8, "ok"),
        (69.9, 0.9, "ok"),
        (90.0, 0.69, "ok"),
        (70.0, 0.7, "ok"),
        (None, None, "failed"),
    ]
    predictions = []
    for sequence, (plddt, ptm, status) in zip(mgnify, metrics, strict=False):
        predictions.append(
            {
                **{field.name: None for field in PREDICTIONS},
                "checksum": sequence_checksum(sequence),
                "sequence": sequence,
                "mean_plddt": plddt,
                "ptm": ptm,
                "status": status,
                "chunk": "L0256-00000",
            }
        )
    (tmp_path / "predictions").mkdir()
    pq.write_table(
        pa.Table.from_pylist(predictions, schema=PREDICTIONS),
        tmp_path / "predictions" / "L0256-00000.parquet",
    )
    manifest = [
        {**{field.name: None for field in MANIFEST}, "checksum": row["checksum"], "chunk": row["chunk"]}
        for row in predictions
    ]
    pq.write_table(pa.Table.from_pylist(manifest, schema=MANIFEST), tmp_path / "manifest.parquet")
    table = pa.concat_tables(
        clusters.confident_sequences(tmp_path / "manifest.parquet", tmp_path / "predictions", 70, 0.7)
    )
    assert table["sequence"].to_pylist() == [mgnify[0], mgnify[3]]
    assert table["score"].to_pylist() == pytest.approx([0.64, 0.49])


def test_a_drop_with_nothing_confident_keeps_the_clustering(tmp_path, mgnify):
    rng = random.Random(5)
    out = tmp_path / "clusters"
    clusters.cluster_drop(
        [confident_table(mgnify[:30], rng)], "d1", None, out / "d1" / "m.parquet", out / "d1" / "s.tar"
    )
    clusters.cluster_drop([], "d2", out / "d1" / "s.tar", out / "d2" / "m.parquet", out / "d2" / "s.tar")
    assert pq.read_table(out / "d2" / "m.parquet").num_rows == 0
    assert state_assignment(out / "d2" / "s.tar", tmp_path) == state_assignment(
        out / "d1" / "s.tar", tmp_path
    )
