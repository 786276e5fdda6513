import asyncio
import json
import os
import re
import shutil
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from shlex import quote as shlex_quote

import pyarrow.parquet as pq
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger
from snakemake.settings.types import DeploymentMethod, SharedFSUsage
from snakemake.utils import validate

from atlas.chunkstore import chunk_slots, slot_name
from atlas.index import outcome_schema
from atlas.lock import OutdirLock, OutdirLocked
from atlas.preflight import PreflightError, check_config, drop_entries, model_problems, predictions_key

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

# Drops and the outdir are paths on this machine unless a default storage provider (S3, GCS, ...) holds them.
LOCAL_FILES = workflow.storage_settings.default_storage_provider is None
# Jobs see this machine's model cache unless they run without a shared filesystem (e.g. Kubernetes pods).
JOBS_SHARE_FS = SharedFSUsage.SOURCES in workflow.storage_settings.shared_fs_usage

# The config is checked once, in the process that schedules the jobs, before any job exists.
if workflow.is_main_process:
    try:
        check_config(config, Path(workflow.basedir), local_files=LOCAL_FILES, check_model=False)
    except PreflightError as error:
        raise WorkflowError(str(error)) from None

OUTDIR = os.path.normpath(config["outdir"])
DROP_FILE = dict(drop_entries(config["drops"]))
DROPS = list(DROP_FILE)
# Predictions of one model (and recycle count) live apart from another's, so changing `model` adds work and
# deletes none. Only what changes results is in this key (device, batch sizes, threads are not).
MODEL_KEY = predictions_key(config["model"], config["num_recycles"])

# Rules call `atlas STEP`: a shell function running this checkout's package with the interpreter that runs
# Snakemake (a venv need not be activated), or the rule's own `python` under conda deployment.
USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
ATLAS_PYTHON = "python" if USES_CONDA else shlex_quote(sys.executable)
shell.prefix(
    f"set -euo pipefail; atlas() {{{{ PYTHONPATH={shlex_quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"
    f' {ATLAS_PYTHON} -m atlas "$@"; }}}}; '
)

# Where each stage writes, defined once; rules and input functions format these patterns.
MANIFEST_FILE = f"{OUTDIR}/chunks/{{drop}}/manifest.parquet"
CHUNK_FASTA = f"{OUTDIR}/chunks/{{drop}}/{{chunk}}.fasta"
# With remote storage a checkpoint's outputs must be declared, and the split learns its chunk names (content
# keys) only while running: there it writes the chunk FASTAs into max_chunks_per_drop slot files named in
# advance (atlas.chunkstore; the slots past the drop's last chunk are empty), so each fold job retrieves its
# own chunk and nothing else. On a shared filesystem the chunk FASTAs keep their names beside the manifest.
SLOT_FASTA = f"{OUTDIR}/chunks/{{drop}}/slots/{{slot}}.fasta"
SPLIT_SLOTS = (
    []
    if LOCAL_FILES
    else [SLOT_FASTA.replace("{slot}", slot_name(index)) for index in range(config["max_chunks_per_drop"])]
)
PREDICTIONS_FILE = f"{OUTDIR}/predictions/{MODEL_KEY}/{{drop}}/{{chunk}}.parquet"
NOVELTY_FILE = f"{OUTDIR}/novelty/{{drop}}/{{chunk}}.parquet"

NOVELTY_REFERENCE = config["novelty"]["reference"]
REFERENCE_DB = f"{OUTDIR}/reference/reference.json"
# With remote storage the reference build (reference.json and the MMseqs2 files it names) is one declared tar,
# unpacked by each novelty job; on a shared filesystem it is the JSON and its (content-keyed, shareable) cache.
REFERENCE_PACK = f"{OUTDIR}/reference/reference.tar"
NOVELTY_DB = REFERENCE_DB if LOCAL_FILES else REFERENCE_PACK


wildcard_constraints:
    drop="|".join(re.escape(drop) for drop in DROPS),
    chunk=r"[A-Za-z0-9_.-]+",
    job=r"[A-Za-z0-9_.-]+",


OUTDIR_LOCK = OutdirLock(OUTDIR)


onstart:
    # Before the first job (not on dry runs): the model must resolve where the jobs run, and one run at a
    # time writes an outdir. The lock is released when this process ends, however it ends.
    problems = model_problems(config["model"]) if JOBS_SHARE_FS else []
    if problems:
        raise WorkflowError(
            "the configuration cannot run (nothing was started):\n  - " + "\n  - ".join(problems)
        )
    if LOCAL_FILES:
        try:
            OUTDIR_LOCK.acquire()
        except OutdirLocked as error:
            raise WorkflowError(str(error)) from None
        if OUTDIR_LOCK.previous:
            logger.warning(
                f"a previous run on {OUTDIR} ended without releasing it: {OUTDIR_LOCK.previous}"
            )


onsuccess:
    OUTDIR_LOCK.release()


onerror:
    OUTDIR_LOCK.release()


def fold_gpus(wildcards):
    """GPUs a fold job asks for: one on `cuda*`, none on `cpu`. Evaluated when the job is scheduled, so `auto`
    means the compute nodes' GPUs on a cluster and this host's GPU locally."""
    device = config["device"]
    if device == "auto":
        if not workflow.local_exec:
            return 1
        import torch

        return int(torch.cuda.is_available())
    return int(device.startswith("cuda"))


def reference_db_mb(input):
    """Size of the MMseqs2 reference database named by reference.json, or packed, in MB (novelty jobs load
    it)."""
    if not LOCAL_FILES:
        return input.size_mb  # the packed build, with the chunks
    db = Path(input.db)
    prefix = db.parent / json.loads(db.read_text())["db"]
    return sum(path.stat().st_size for path in prefix.parent.glob(f"{prefix.name}*") if path.is_file()) / 1e6


def drop_fasta(wildcards):
    return DROP_FILE[wildcards.drop]


def earlier_manifests(wildcards):
    """Dedup is against every drop that arrived before this one, so adding a drop never touches earlier ones."""
    position = DROPS.index(wildcards.drop)
    return [MANIFEST_FILE.format(drop=drop) for drop in DROPS[:position]]


def local_copy(iofile):
    """A path on this machine holding `iofile`: the file itself, or a fresh copy fetched through its storage
    object (with remote storage, local copies of outputs are removed after upload: never read the bare path).
    """
    if not iofile.is_storage:
        return str(iofile)
    storage_object = iofile.storage_object
    # Input functions run inside Snakemake's event loop: retrieve in a thread with a loop of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, storage_object.managed_retrieve()).result()
    return str(storage_object.local_path())


@cache
def queued_chunks(manifest, mtime_ns, size):
    """Chunk names of a manifest's queued rows, sorted (cached per manifest version)."""
    table = pq.read_table(manifest, columns=["chunk"], filters=[("status", "==", "queued")])
    return tuple(sorted(set(table.column("chunk").to_pylist())))


cached_chunk_slots = cache(chunk_slots)


def chunk_file_stem(drop, chunk):
    """The name (without suffix) of a chunk's FASTA: the chunk's, or with remote storage its slot's."""
    return chunk if LOCAL_FILES else cached_chunk_slots(drop_chunks(drop))[chunk]


def chunk_fasta_path(drop, chunk):
    """A chunk's FASTA: beside the manifest, or with remote storage its slot file."""
    if LOCAL_FILES:
        return CHUNK_FASTA.format(drop=drop, chunk=chunk)
    return SLOT_FASTA.format(drop=drop, slot=chunk_file_stem(drop, chunk))


def drop_chunks(drop):
    """Chunk names of a drop, read from its split manifest once the split checkpoint has run: the split's own
    record, never a directory listing, so a chunk file that went missing is reported, not skipped."""
    manifest = local_copy(checkpoints.split_drop.get(drop=drop).output.manifest)
    stat = os.stat(manifest)
    return queued_chunks(manifest, stat.st_mtime_ns, stat.st_size)


def chunk_fasta(output_pattern):
    """Input function of a per-chunk job: the chunk's FASTA. A local one that is missing while the job's
    output (`output_pattern`) is still to be made stops the workflow with the remedy, naming both files."""

    def fasta(wildcards):
        path = chunk_fasta_path(wildcards.drop, wildcards.chunk)
        output = output_pattern.format(drop=wildcards.drop, chunk=wildcards.chunk)
        if LOCAL_FILES and not os.path.exists(path) and not os.path.exists(output):
            raise WorkflowError(
                f"chunk file {path!r} is listed in {MANIFEST_FILE.format(drop=wildcards.drop)!r} but missing, "
                f"and {output!r} is not made yet: delete that manifest to split drop {wildcards.drop!r} again"
                " (chunks are named by content, so finished predictions are kept and reused)"
            )
        return path

    return fasta


def all_predictions(wildcards):
    return [PREDICTIONS_FILE.format(drop=drop, chunk=chunk) for drop in DROPS for chunk in drop_chunks(drop)]


def drop_novelty(wildcards):
    """A drop's novelty files (none without a reference)."""
    if not NOVELTY_REFERENCE:
        return []
    return [NOVELTY_FILE.format(drop=wildcards.drop, chunk=chunk) for chunk in drop_chunks(wildcards.drop)]


def all_novelty(wildcards):
    if not NOVELTY_REFERENCE:
        return []
    return [NOVELTY_FILE.format(drop=drop, chunk=chunk) for drop in DROPS for chunk in drop_chunks(drop)]


# One novelty search job covers consecutive chunks of a drop, up to `novelty.job_residues` residues, so its
# fixed cost (process start, mapping the reference and its index, at UniRef90 size reading it from disk) is
# paid once per many chunks. Its chunk list travels as names (a bounded command line); it writes one Parquet
# per chunk, packed into one temporary tar (one file, not a folder: it travels through remote storage like
# any output), from which a local rule takes each chunk's NOVELTY_FILE.
NOVELTY_JOB_TAR = f"{OUTDIR}/novelty/{{drop}}/.jobs/{{job}}.tar"
NOVELTY_MAX_CHUNKS_PER_JOB = 200
NOVELTY_CHUNKS_PER_JOB = max(
    1, min(NOVELTY_MAX_CHUNKS_PER_JOB, config["novelty"]["job_residues"] // config["chunk_residues"])
)
_novelty_jobs = {}  # drop -> (job name -> its chunks, chunk -> its job)


def novelty_jobs(drop):
    """A drop's novelty jobs, named after their first chunk, and each chunk's job."""
    if drop not in _novelty_jobs:
        chunks = drop_chunks(drop)
        jobs = {
            chunks[start]: chunks[start : start + NOVELTY_CHUNKS_PER_JOB]
            for start in range(0, len(chunks), NOVELTY_CHUNKS_PER_JOB)
        }
        _novelty_jobs[drop] = (jobs, {chunk: job for job, members in jobs.items() for chunk in members})
    return _novelty_jobs[drop]


# novelty.queries: "confident" searches the confident predictions, read from the chunks' predictions files
# (so after folding); "all" every sequence of the chunks' FASTAs (beside folding)
NOVELTY_SEARCHES_PREDICTIONS = config["novelty"]["queries"] == "confident"
# what decides a chunk's novelty rows
NOVELTY_SEARCH_SETTINGS = {
    key: config["novelty"][key] for key in ("queries", "max_identity", "min_coverage", "sensitivity")
} | ({"min_plddt": config["min_plddt"], "min_ptm": config["min_ptm"]} if NOVELTY_SEARCHES_PREDICTIONS else {})


def novelty_job_queries(wildcards):
    """The files a novelty job reads its queries from, in its chunks' order: predictions or chunk FASTAs."""
    chunks = novelty_jobs(wildcards.drop)[0][wildcards.job]
    if NOVELTY_SEARCHES_PREDICTIONS:
        return [PREDICTIONS_FILE.format(drop=wildcards.drop, chunk=chunk) for chunk in chunks]
    return [chunk_fasta_path(wildcards.drop, chunk) for chunk in chunks]


def copy_from_tar(archive, member, output):
    """A chunk's novelty Parquet out of its search job's tar (rule novelty_chunk)."""
    with tarfile.open(archive) as job, open(output, "wb") as copy:
        shutil.copyfileobj(job.extractfile(member), copy)


def novelty_job_of_chunk(wildcards):
    job = novelty_jobs(wildcards.drop)[1][wildcards.chunk]
    return NOVELTY_JOB_TAR.format(drop=wildcards.drop, job=job)


def all_manifests(wildcards):
    return [MANIFEST_FILE.format(drop=drop) for drop in DROPS]
