"""Structural novelty: is a confident prediction's fold already in a reference set of structures?

A Foldseek-like search built from packaged parts: each chain is encoded into 3Di states (mini3di, the
Foldseek encoder in NumPy), MMseqs2 searches the 3Di strings with the 3Di substitution matrix (biotite's
`std_3di_matrix`, Foldseek's), and the top K hits, in score order, are verified with TM-align (tmtools); the
first hit with a TM-score >= min_tm, normalised by the query's length, makes the prediction "known". 3Di
scores rank pairs poorly against TM-score, so a search hit alone never decides: every "known" call is backed
by a TM-align.

Two workflow steps live here:

`atlas structure-reference --reference PATH --output {outdir}/structure_reference/reference.json`
    PATH is a folder of PDB/mmCIF files (`.pdb`, `.ent`, `.cif`, `.mmcif`, each optionally `.gz`; searched
    recursively), a Foldcomp database (`PATH` with `PATH.index` beside it; needs the `foldcomp` package), or a
    reference already built by this step (a folder holding `structure_reference.json`, used in place). Every
    protein chain of the first model (>= MIN_REFERENCE_RESIDUES residues with N, CA and C) becomes one entry,
    named `{file stem}_{chain}`. A build lands in `structure_reference/{key}/`, where the key is a digest of
    the source's listing (relative names, sizes, modification times): built once per content, reused by
    every later run and drop, rebuilt when a file is added, removed or changed. It holds

    structure_reference.json  written last: the source, entry and residue counts (a build without it is
                              incomplete and is redone)
    entries.parquet           name, sequence, length, offset (into ca.f32, in residues)
    ca.f32                    the CA coordinates of every entry, float32, read through a memory map
    mmseqs/reference*         the MMseqs2 database of the 3Di strings

`atlas structural --predictions CHUNK.parquet --reference REFERENCE.json --output structural.parquet ...`
    One row per `ok` prediction of the chunk, in its order (atlas.tables.STRUCTURAL). Predictions at or
    above both confidence thresholds (mean pLDDT >= min_plddt, pTM >= min_ptm) are searched; the others
    get `confident` false and null search columns.

Structures are read from a predictions row only through `prediction_chain`, so a change of storage (e.g.
Foldcomp instead of mmCIF text) stays in that one function.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import gemmi
import numpy as np
import pyarrow as pa

from atlas.novelty import MmseqsError, find_mmseqs, mmseqs_version, run_mmseqs
from atlas.tables import STRUCTURAL

STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif")
MIN_REFERENCE_RESIDUES = 10
BUILD_STAMP = "structure_reference.json"
DB_NAME = "reference"
# From this size on, a precomputed k-mer index (`createindex`, GBs on disk) saves each chunk job building one.
INDEX_MIN_RESIDUES = 5_000_000
ALIGNED_DISTANCE = 5.0  # TM-align's "aligned length" counts the pairs closer than 5 A
THREE_DI_ALPHABET = "ACDEFGHIKLMNPQRSTVWY"


def _log(message: str) -> None:
    print(f"[atlas] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- structures


@dataclass(frozen=True)
class Chain:
    """One protein chain: sequence and backbone coordinates (Angstrom), one row per residue."""

    sequence: str
    n: np.ndarray
    ca: np.ndarray
    c: np.ndarray
    cb: np.ndarray  # NaN where the residue has no CB (glycine): the 3Di encoder places a virtual one


def _atom_xyz(residue: gemmi.Residue, name: str) -> tuple[float, float, float]:
    atom = residue.find_atom(name, "*")
    if atom is None:
        return (np.nan, np.nan, np.nan)
    return (atom.pos.x, atom.pos.y, atom.pos.z)


def chain_from_gemmi(chain: gemmi.Chain) -> Chain:
    """The residues of a gemmi chain's polymer that have N, CA and C (others cannot be encoded or aligned)."""
    residues = [
        residue
        for residue in chain.get_polymer()
        if all(residue.find_atom(name, "*") is not None for name in ("N", "CA", "C"))
    ]
    coords = {
        name: np.array([_atom_xyz(residue, name) for residue in residues], dtype=np.float64).reshape(-1, 3)
        for name in ("N", "CA", "C", "CB")
    }
    sequence = gemmi.one_letter_code([residue.name for residue in residues]).upper().replace("?", "X")
    return Chain(sequence, coords["N"], coords["CA"], coords["C"], coords["CB"])


def _protein_chains(structure: gemmi.Structure) -> Iterator[tuple[str, Chain]]:
    structure.setup_entities()
    structure.remove_alternative_conformations()
    for chain in structure[0]:
        if chain.get_polymer().check_polymer_type() in (
            gemmi.PolymerType.PeptideL,
            gemmi.PolymerType.Unknown,
        ):
            parsed = chain_from_gemmi(chain)
            if len(parsed.sequence):
                yield chain.name or "A", parsed


def read_structure_file(path: str | Path) -> gemmi.Structure:
    structure = gemmi.read_structure(str(path))
    if len(structure) == 0:
        raise ValueError(f"{path}: no model")
    return structure


def read_chain(path: str | Path) -> Chain:
    """The first protein chain of a PDB/mmCIF file (plain or .gz)."""
    for _, chain in _protein_chains(read_structure_file(path)):
        return chain
    raise ValueError(f"{path}: no protein chain with N, CA and C atoms")


def prediction_chain(row: dict) -> Chain:
    """The predicted structure of one predictions row (atlas.structure.STRUCTURE_COLUMNS: its structure
    stored as Foldcomp or mmCIF)."""
    from atlas.structure import render_mmcif

    document = gemmi.cif.read_string(render_mmcif(row))
    structure = gemmi.make_structure_from_block(document.sole_block())
    for _, chain in _protein_chains(structure):
        return chain
    raise ValueError(f"prediction {row.get('id') or row.get('checksum')}: its mmCIF holds no protein chain")


def encode_3di(chain: Chain) -> str:
    """Foldseek's 3Di states of a chain, one letter per residue."""

    states = _encoder().encode_atoms(ca=chain.ca, cb=chain.cb, n=chain.n, c=chain.c)
    return _encoder().build_sequence(states) if len(chain.sequence) else ""


_ENCODER = None


def _encoder():
    global _ENCODER
    if _ENCODER is None:
        import mini3di

        _ENCODER = mini3di.Encoder()
    return _ENCODER


def tm_align(query: Chain, target: Chain | tuple[np.ndarray, str]):
    """tmtools' TM-align of query (chain 1) against target: `tm_norm_chain1` is normalised by the query."""
    import tmtools

    target_ca, target_sequence = (target.ca, target.sequence) if isinstance(target, Chain) else target
    return tmtools.tm_align(
        np.ascontiguousarray(query.ca, dtype=np.float64),
        np.ascontiguousarray(target_ca, dtype=np.float64),
        query.sequence,
        target_sequence,
    )


def aligned_length(result, query_ca: np.ndarray, target_ca: np.ndarray) -> int:
    """Residue pairs of the TM-align alignment closer than 5 A after superposition (TM-align's Lali)."""
    query_index, target_index, pairs_q, pairs_t = 0, 0, [], []
    for query_letter, target_letter in zip(result.seqxA, result.seqyA, strict=True):
        if query_letter != "-" and target_letter != "-":
            pairs_q.append(query_index)
            pairs_t.append(target_index)
        query_index += query_letter != "-"
        target_index += target_letter != "-"
    if not pairs_q:
        return 0
    moved = np.asarray(query_ca, dtype=np.float64)[pairs_q] @ np.asarray(result.u).T + np.asarray(result.t)
    distances = np.linalg.norm(moved - np.asarray(target_ca, dtype=np.float64)[pairs_t], axis=1)
    return int((distances < ALIGNED_DISTANCE).sum())


def write_3di_matrix(path: Path) -> Path:
    """Foldseek's 3Di substitution matrix (from biotite) as an MMseqs2 `.out` matrix file (X scores 0)."""
    from biotite.sequence.align import SubstitutionMatrix

    matrix = SubstitutionMatrix.std_3di_matrix()
    letters = [symbol.upper() for symbol in matrix.get_alphabet1()]
    if sorted(letters) != sorted(THREE_DI_ALPHABET):
        raise ValueError(f"unexpected 3Di alphabet from biotite: {letters}")
    scores = matrix.score_matrix()
    lines = ["# 3Di substitution matrix of Foldseek (biotite SubstitutionMatrix.std_3di_matrix)"]
    lines.append("   " + "  ".join(f"{letter:>2}" for letter in [*letters, "X"]))
    for i, letter in enumerate(letters):
        row = [int(value) for value in scores[i]] + [0]
        lines.append(f"{letter}  " + "  ".join(f"{value:>2}" for value in row))
    lines.append("X  " + "  ".join(f"{0:>2}" for _ in range(len(letters) + 1)))
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ reference


def _structure_files(folder: Path) -> list[Path]:
    files = []
    for path in folder.rglob("*"):
        name = path.name.lower().removesuffix(".gz")
        if path.is_file() and name.endswith(STRUCTURE_SUFFIXES):
            files.append(path)
    return sorted(files)


def _stem(path: Path) -> str:
    name = path.name
    name = name[: -len(".gz")] if name.lower().endswith(".gz") else name
    return name.rsplit(".", 1)[0]


def source_key(source: Path) -> tuple[str, str]:
    """(kind, key): a digest of the source's listing (names, sizes, mtimes), the content key of a build."""
    digest = hashlib.sha256()
    if source.is_dir():
        kind = "folder"
        for path in _structure_files(source):
            stat = path.stat()
            digest.update(f"{path.relative_to(source)}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    elif Path(f"{source}.index").is_file():
        kind = "foldcomp"
        for path in (source, Path(f"{source}.index")):
            stat = path.stat()
            digest.update(f"{path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    else:
        raise FileNotFoundError(
            f"structure reference {source} is neither a folder of PDB/mmCIF files nor a Foldcomp database "
            f"(no {source}.index)"
        )
    return kind, digest.hexdigest()[:16]


def _reference_entries(source: Path, kind: str) -> Iterator[tuple[str, Chain]]:
    """(name, chain) of every protein chain of the source; unreadable files are logged and skipped."""
    if kind == "foldcomp":
        import foldcomp

        with foldcomp.open(str(source)) as database:
            for name, pdb_text in database:
                structure = gemmi.read_pdb_string(pdb_text)
                for chain_name, chain in _protein_chains(structure):
                    yield f"{name}_{chain_name}", chain
        return
    for path in _structure_files(source):
        try:
            structure = read_structure_file(path)
        except (RuntimeError, ValueError, OSError) as error:
            _log(f"skipping {path}: {error}")
            continue
        for chain_name, chain in _protein_chains(structure):
            yield f"{_stem(path)}_{chain_name}", chain


def _safe_name(name: str) -> str:
    return "".join(letter if letter.isalnum() or letter in "._-" else "_" for letter in name)


def write_reference(
    entries: Iterable[tuple[str, Chain]], build_dir: Path, provenance: dict, threads: int = 1
) -> dict:
    """Write a structure reference build (3Di database, coordinates, entries) into build_dir, stamp last."""
    import pyarrow.parquet as pq

    binary = find_mmseqs()
    names, sequences, lengths, offsets, offset = [], [], [], [], 0
    seen: set[str] = set()
    fasta = build_dir / "3di.fasta"
    with open(fasta, "w") as states, open(build_dir / "ca.f32", "wb") as coordinates:
        for name, chain in entries:
            if len(chain.sequence) < MIN_REFERENCE_RESIDUES:
                continue
            name = _safe_name(name)
            if name in seen:
                raise ValueError(f"{provenance.get('source')}: two reference chains are both named {name}")
            seen.add(name)
            states.write(f">{name}\n{encode_3di(chain)}\n")
            coordinates.write(np.ascontiguousarray(chain.ca, dtype=np.float32).tobytes())
            names.append(name)
            sequences.append(chain.sequence)
            lengths.append(len(chain.sequence))
            offsets.append(offset)
            offset += len(chain.sequence)
    if not names:
        raise ValueError(f"structure reference {provenance.get('source')}: no protein chain found")
    table = pa.table(
        {"name": names, "sequence": sequences, "length": lengths, "offset": offsets},
        schema=pa.schema(
            [("name", pa.string()), ("sequence", pa.string()), ("length", pa.int32()), ("offset", pa.int64())]
        ),
    )
    pq.write_table(table, build_dir / "entries.parquet")
    (build_dir / "mmseqs").mkdir()
    database = build_dir / "mmseqs" / DB_NAME
    run_mmseqs(binary, ["createdb", fasta, database, "--dbtype", "1"])
    fasta.unlink()
    indexed = offset >= INDEX_MIN_RESIDUES
    if indexed:
        matrix = write_3di_matrix(build_dir / "mmseqs" / "3di.out")
        tmp = Path(tempfile.mkdtemp(prefix="tmp-createindex-", dir=build_dir))
        try:
            # the index records the search's k-mer settings; searches with the same ones use it
            run_mmseqs(
                binary,
                [
                    "createindex", database, tmp, "--seed-sub-mat", matrix,
                    "--mask", "0", "--comp-bias-corr", "0", "--threads", max(1, threads),
                ],
            )  # fmt: skip
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    stamp = {
        **provenance,
        "entries": len(names),
        "residues": offset,
        "indexed": indexed,
        "mmseqs_version": mmseqs_version(binary),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json_atomic(build_dir / BUILD_STAMP, stamp)
    _log(f"built the structure reference {build_dir}: {len(names)} chains, {offset} residues")
    return stamp


def build_reference(reference: str | Path, output: str | Path, threads: int = 1) -> dict:
    """Build (or reuse) the structure reference and write output (reference.json) last, atomically."""
    output = Path(output)
    source = Path(reference).expanduser().absolute()
    if (source / BUILD_STAMP).is_file():
        _log(f"using the structure reference built earlier in {source} in place")
        info = {"path": str(source), "built": False, "reused": True}
    else:
        kind, key = source_key(source)
        build_dir = output.parent / key
        stamp = build_dir / BUILD_STAMP
        if stamp.is_file():
            _log(f"reusing the structure reference {build_dir} built earlier from {source}")
            info = {"path": os.path.relpath(build_dir, output.parent), "built": True, "reused": True}
        else:
            if build_dir.exists():
                _log(f"removing the incomplete build {build_dir}")
                shutil.rmtree(build_dir)
            build_dir.mkdir(parents=True)
            write_reference(
                _reference_entries(source, kind),
                build_dir,
                {"source": str(source), "source_type": kind, "key": key},
                threads,
            )
            info = {"path": os.path.relpath(build_dir, output.parent), "built": True, "reused": False}
    info["source"] = str(source)
    info["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json_atomic(output, info)
    return info


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


class Reference:
    """A built structure reference: 3Di MMseqs2 database, and CA coordinates by entry name (memory-mapped)."""

    def __init__(self, reference_json: str | Path):
        import pyarrow.parquet as pq

        reference_json = Path(reference_json)
        info = json.loads(reference_json.read_text())
        self.path = reference_json.parent / info["path"]  # an absolute path stays absolute
        if not (self.path / BUILD_STAMP).is_file():
            raise FileNotFoundError(f"{reference_json} names {self.path}, which holds no complete reference")
        self.db = self.path / "mmseqs" / DB_NAME
        entries = pq.read_table(self.path / "entries.parquet", columns=["name", "length", "offset"])
        names = entries.column("name").to_pylist()
        self._index = dict(zip(names, range(len(names)), strict=True))
        self._lengths = entries.column("length").to_numpy()
        self._offsets = entries.column("offset").to_numpy()
        self._sequences = None
        self._ca = np.memmap(self.path / "ca.f32", dtype=np.float32, mode="r").reshape(-1, 3)

    def __len__(self) -> int:
        return len(self._index)

    def sequence(self, name: str) -> str:
        if self._sequences is None:  # read on first use: verification needs only the verified entries'
            import pyarrow.parquet as pq

            self._sequences = pq.read_table(self.path / "entries.parquet", columns=["sequence"]).column(0)
        return self._sequences[self._index[name]].as_py()

    def target(self, name: str) -> tuple[np.ndarray, str]:
        """(CA coordinates, sequence) of one entry."""
        row = self._index[name]
        start = int(self._offsets[row])
        return np.asarray(self._ca[start : start + int(self._lengths[row])], dtype=np.float64), self.sequence(
            name
        )


# -------------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchSettings:
    """How the 3Di search runs (defaults: the config schema's, chosen on the truth set; see README)."""

    sensitivity: float
    max_seqs: int
    threads: int
    prefilter_mode: int  # 0: k-mer prefilter; 1: ungapped scoring of every target; 2: no prefilter


def search_3di(
    queries: dict[str, str], reference: Reference, workdir: Path, settings: SearchSettings
) -> dict[str, list[str]]:
    """MMseqs2 search of 3Di strings against the reference: targets per query, best bit score first."""
    if not queries:
        return {}
    binary = find_mmseqs()
    matrix = write_3di_matrix(workdir / "3di.out")
    query_fasta = workdir / "queries.fasta"
    with open(query_fasta, "w") as handle:
        for name, states in queries.items():
            handle.write(f">{name}\n{states}\n")
    query_db, result_db, table = workdir / "queries", workdir / "result", workdir / "hits.tsv"
    run_mmseqs(binary, ["createdb", query_fasta, query_db, "--dbtype", "1"])
    run_mmseqs(
        binary,
        [
            "search", query_db, reference.db, result_db, workdir / "tmp",
            "--sub-mat", matrix, "--seed-sub-mat", matrix,
            "-s", settings.sensitivity,
            "--max-seqs", settings.max_seqs,
            "--prefilter-mode", settings.prefilter_mode,
            "--comp-bias-corr", "0",
            "--mask", "0",
            "-e", "10",
            "--threads", max(1, settings.threads),
        ],
    )  # fmt: skip
    run_mmseqs(
        binary,
        ["convertalis", query_db, reference.db, result_db, table, "--format-output", "query,target,bits"],
    )
    scored: dict[str, list[tuple[float, str]]] = {name: [] for name in queries}
    with open(table) as handle:
        for line in handle:
            query, target, bits = line.rstrip("\n").split("\t")[:3]
            scored[query].append((float(bits), target))
    return {
        query: [target for _, target in sorted(hits, key=lambda hit: (-hit[0], hit[1]))]
        for query, hits in scored.items()
    }


@dataclass(frozen=True)
class Verdict:
    hit: str | None
    tm: float | None
    aligned_length: int | None
    verified: int
    novel: bool


def verify(query: Chain, candidates: Iterable[str], reference: Reference, k: int, min_tm: float) -> Verdict:
    """TM-align the first k candidates in order, stopping at the first TM >= min_tm (normalised by query)."""
    best = None
    verified = 0
    for name in candidates:
        if verified >= k:
            break
        target_ca, target_sequence = reference.target(name)
        result = tm_align(query, (target_ca, target_sequence))
        verified += 1
        if best is None or result.tm_norm_chain1 > best[1].tm_norm_chain1:
            best = (name, result, target_ca)
        if result.tm_norm_chain1 >= min_tm:
            break
    if best is None:
        return Verdict(None, None, None, 0, True)
    name, result, target_ca = best
    tm = float(result.tm_norm_chain1)
    return Verdict(name, tm, aligned_length(result, query.ca, target_ca), verified, tm < min_tm)


_WORKER_REFERENCE: Reference | None = None


def _open_worker_reference(reference_json: str) -> None:
    global _WORKER_REFERENCE
    _WORKER_REFERENCE = Reference(reference_json)


def _verify_in_worker(job: tuple[Chain, list[str], int, float]) -> Verdict:
    chain, candidates, k, min_tm = job
    assert _WORKER_REFERENCE is not None
    return verify(chain, candidates, _WORKER_REFERENCE, k, min_tm)


def verify_all(
    chains: dict[str, Chain],
    candidates: dict[str, list[str]],
    reference_json: str | Path,
    k: int,
    min_tm: float,
    workers: int = 1,
) -> dict[str, Verdict]:
    """verify() of every chain; TM-align holds the GIL, so more than one worker means processes."""
    jobs = [(chain, candidates.get(name, [])[:k], k, min_tm) for name, chain in chains.items()]
    if workers <= 1 or len(jobs) < 2:
        reference = Reference(reference_json)
        return {name: verify(*job[:2], reference, *job[2:]) for name, job in zip(chains, jobs, strict=True)}
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        workers, initializer=_open_worker_reference, initargs=(str(reference_json),)
    ) as pool:
        verdicts = list(pool.map(_verify_in_worker, jobs, chunksize=max(1, len(jobs) // (8 * workers))))
    return dict(zip(chains, verdicts, strict=True))


def structural_chunk(
    predictions: str | Path,
    reference_json: str | Path,
    output: str | Path,
    min_plddt: float,
    min_ptm: float,
    k: int,
    min_tm: float,
    settings: SearchSettings,
) -> dict:
    """Search a predictions chunk's confident structures and write its structural Parquet; returns counts."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from atlas.structure import STRUCTURE_COLUMNS
    from atlas.tables import high_confidence, write_parquet_atomic

    output = Path(output)
    metrics_table = pq.read_table(predictions, columns=["id", "checksum", "status", "mean_plddt", "ptm"])
    confident = pc.indices_nonzero(high_confidence(metrics_table, min_plddt, min_ptm))
    metrics = metrics_table.to_pylist()
    rows = [row for row in metrics if row["status"] == "ok"]
    confident_rows = confident.to_pylist()
    # structures are the bulk of a chunk: only the confident ones are read into Python
    structures = pq.read_table(predictions, columns=list(STRUCTURE_COLUMNS)).take(confident).to_pylist()
    chains = {
        metrics[index]["checksum"]: prediction_chain(row)
        for index, row in zip(confident_rows, structures, strict=True)
    }
    verdicts: dict[str, tuple[int, Verdict]] = {}
    timings = {"search_s": 0.0, "verify_s": 0.0}
    if chains:
        reference = Reference(reference_json)
        output.parent.mkdir(parents=True, exist_ok=True)
        for stale in output.parent.glob(f".{output.name}.search-*"):  # left by a killed run of this job
            shutil.rmtree(stale, ignore_errors=True)
        workdir = Path(tempfile.mkdtemp(prefix=f".{output.name}.search-", dir=output.parent))
        try:
            started = time.perf_counter()
            candidates = search_3di(
                {checksum: encode_3di(chain) for checksum, chain in chains.items()},
                reference,
                workdir,
                settings,
            )
            timings["search_s"] = time.perf_counter() - started
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        started = time.perf_counter()
        verified = verify_all(chains, candidates, reference_json, k, min_tm, settings.threads)
        verdicts = {checksum: (len(candidates.get(checksum, [])), verified[checksum]) for checksum in chains}
        timings["verify_s"] = time.perf_counter() - started
    columns: dict[str, list] = {field.name: [] for field in STRUCTURAL}
    for row in rows:
        searched = verdicts.get(row["checksum"])
        columns["checksum"].append(row["checksum"])
        columns["confident"].append(searched is not None)
        candidates_count, verdict = searched if searched else (None, None)
        columns["structure_hit"].append(verdict.hit if verdict else None)
        columns["structure_tm"].append(verdict.tm if verdict else None)
        columns["structure_aligned_length"].append(verdict.aligned_length if verdict else None)
        columns["structure_candidates"].append(candidates_count)
        columns["structure_verified"].append(verdict.verified if verdict else None)
        columns["structurally_novel"].append(verdict.novel if verdict else None)
    write_parquet_atomic(pa.table(columns, schema=STRUCTURAL), output)
    counts = {
        "predictions": len(rows),
        "confident": len(chains),
        "structurally_novel": sum(1 for _, verdict in verdicts.values() if verdict.novel),
        "tm_aligns": sum(verdict.verified for _, verdict in verdicts.values()),
        **{key: round(value, 3) for key, value in timings.items()},
    }
    _log(f"wrote {output}: {json.dumps(counts)}")
    return counts


# ------------------------------------------------------------------------------------------------------ CLI


def reference_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas structure-reference", description="build (or reuse) the structure reference"
    )
    parser.add_argument(
        "--reference", required=True, help="folder of PDB/mmCIF files, Foldcomp DB or a build"
    )
    parser.add_argument("--output", required=True, help="reference.json to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        build_reference(args.reference, args.output, args.threads)
    except (MmseqsError, OSError, ValueError, RuntimeError) as error:
        print(f"atlas structure-reference: error: {error}", file=sys.stderr)
        return 1
    return 0


def structural_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas structural", description="search one chunk's confident structures against the reference"
    )
    parser.add_argument("--predictions", required=True, help="the chunk's predictions Parquet")
    parser.add_argument("--reference", required=True, help="reference.json of `atlas structure-reference`")
    parser.add_argument("--output", required=True, help="structural Parquet to write")
    parser.add_argument("--min-plddt", type=float, required=True)
    parser.add_argument("--min-ptm", type=float, required=True)
    parser.add_argument("--min-tm", type=float, required=True)
    parser.add_argument("--top-k", type=int, required=True, help="hits verified with TM-align at most")
    parser.add_argument("--sensitivity", type=float, required=True, help="MMseqs2 -s")
    parser.add_argument("--max-seqs", type=int, required=True, help="MMseqs2 --max-seqs")
    parser.add_argument("--prefilter-mode", type=int, choices=(0, 1, 2), required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    settings = SearchSettings(args.sensitivity, args.max_seqs, args.threads, args.prefilter_mode)
    try:
        structural_chunk(
            args.predictions,
            args.reference,
            args.output,
            args.min_plddt,
            args.min_ptm,
            args.top_k,
            args.min_tm,
            settings,
        )
    except (MmseqsError, OSError, ValueError, KeyError, RuntimeError) as error:
        print(f"atlas structural: error: {error}", file=sys.stderr)
        return 1
    return 0
