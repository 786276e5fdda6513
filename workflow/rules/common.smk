import json
import os
import re
import sys
from shlex import quote as shlex_quote
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml", set_default=True)

OUTDIR = os.path.normpath(config["outdir"])
DROP_FILES = config["drops"]
DROP_SUFFIXES = (".fasta.gz", ".faa.gz", ".fa.gz", ".fasta", ".faa", ".fa")


def drop_name(path):
    """A drop's name is its file name without .fa/.faa/.fasta[.gz] (docs/SPEC.md)."""
    name = os.path.basename(path)
    for suffix in DROP_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"drop file {path!r} does not end in one of {', '.join(DROP_SUFFIXES)}")


DROPS = [drop_name(path) for path in DROP_FILES]
if len(set(DROPS)) != len(DROPS):
    raise ValueError(f"two drops in config 'drops' share a name: {DROPS}")
DROP_FILE = dict(zip(DROPS, DROP_FILES))

# Rules call `atlas STEP`: a shell function running this checkout's package with the interpreter that runs
# Snakemake (a venv need not be activated), or the rule's own `python` under conda deployment.
USES_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
ATLAS_PYTHON = "python" if USES_CONDA else shlex_quote(sys.executable)
shell.prefix(
    f"set -euo pipefail; atlas() {{{{ PYTHONPATH={shlex_quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"
    f" {ATLAS_PYTHON} -m atlas \"$@\"; }}}}; "
)

# Where each stage writes, defined once; rules and input functions format these patterns.
MANIFEST_FILE = f"{OUTDIR}/chunks/{{drop}}/manifest.parquet"
CHUNK_FASTA = f"{OUTDIR}/chunks/{{drop}}/{{chunk}}.fasta"
PREDICTIONS_FILE = f"{OUTDIR}/predictions/{{drop}}/{{chunk}}.parquet"
NOVELTY_FILE = f"{OUTDIR}/novelty/{{drop}}/{{chunk}}.parquet"

NOVELTY_REFERENCE = config["novelty"]["reference"]
REFERENCE_DB = f"{OUTDIR}/reference/reference.json"


wildcard_constraints:
    drop="|".join(re.escape(drop) for drop in DROPS),
    chunk=r"[A-Za-z0-9_.-]+",
    job=r"[A-Za-z0-9_.-]+",


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
    """Size of the MMseqs2 reference database named by reference.json, in MB (novelty jobs load it)."""
    db = Path(input.db)
    prefix = db.parent / json.loads(db.read_text())["db"]
    return sum(path.stat().st_size for path in prefix.parent.glob(f"{prefix.name}*") if path.is_file()) / 1e6


def drop_fasta(wildcards):
    return DROP_FILE[wildcards.drop]


def earlier_manifests(wildcards):
    """Dedup is against every drop that arrived before this one, so adding a drop never touches earlier ones."""
    position = DROPS.index(wildcards.drop)
    return [MANIFEST_FILE.format(drop=drop) for drop in DROPS[:position]]


def drop_chunks(drop):
    """Chunk names of a drop, known once its split checkpoint has run."""
    manifest = checkpoints.split_drop.get(drop=drop).output.manifest
    chunk_dir = Path(manifest).parent
    return sorted(path.name[: -len(".fasta")] for path in chunk_dir.glob("*.fasta"))


def all_predictions(wildcards):
    return [PREDICTIONS_FILE.format(drop=drop, chunk=chunk) for drop in DROPS for chunk in drop_chunks(drop)]


def all_novelty(wildcards):
    if not NOVELTY_REFERENCE:
        return []
    return [NOVELTY_FILE.format(drop=drop, chunk=chunk) for drop in DROPS for chunk in drop_chunks(drop)]


# One novelty search job covers consecutive chunks of a drop, up to `novelty.job_residues` residues, so its
# fixed cost (process start, mapping the reference and its index, at UniRef90 size reading it from disk) is
# paid once per many chunks. Its chunk list travels as names (a bounded command line); it writes one Parquet
# per chunk into a temporary folder, copied to each chunk's NOVELTY_FILE by a local rule.
NOVELTY_JOB_DIR = f"{OUTDIR}/novelty/{{drop}}/.jobs/{{job}}"
NOVELTY_MAX_CHUNKS_PER_JOB = 200
NOVELTY_CHUNKS_PER_JOB = max(
    1, min(NOVELTY_MAX_CHUNKS_PER_JOB, config["novelty"]["job_residues"] // config["chunk_residues"])
)
_novelty_jobs = {}  # drop -> (job name -> its chunks, chunk -> its job); drop_chunks is a directory scan


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


def novelty_job_fastas(wildcards):
    chunks = novelty_jobs(wildcards.drop)[0][wildcards.job]
    return [CHUNK_FASTA.format(drop=wildcards.drop, chunk=chunk) for chunk in chunks]


def novelty_job_of_chunk(wildcards):
    job = novelty_jobs(wildcards.drop)[1][wildcards.chunk]
    return NOVELTY_JOB_DIR.format(drop=wildcards.drop, job=job)


def all_manifests(wildcards):
    return [MANIFEST_FILE.format(drop=drop) for drop in DROPS]
