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


def all_manifests(wildcards):
    return [MANIFEST_FILE.format(drop=drop) for drop in DROPS]
