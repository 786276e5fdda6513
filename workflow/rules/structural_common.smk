# Paths and input functions of the structural novelty and cluster rules (structural.smk).
STRUCTURE_REFERENCE = config["structural_novelty"]["reference"]
STRUCTURE_REFERENCE_JSON = f"{OUTDIR}/structure_reference/reference.json"
# With remote storage the reference is given as one tar of the structure folder, and its build
# (reference.json and the folder it names) is one declared tar, unpacked by each structural job.
STRUCTURE_REFERENCE_PACK = f"{OUTDIR}/structure_reference/reference.tar"
STRUCTURE_REFERENCE_DB = STRUCTURE_REFERENCE_JSON if LOCAL_FILES else STRUCTURE_REFERENCE_PACK
STRUCTURE_ARCHIVES = (".tar", ".tar.gz", ".tgz")

if not LOCAL_FILES and STRUCTURE_REFERENCE and not STRUCTURE_REFERENCE.endswith(STRUCTURE_ARCHIVES):
    raise WorkflowError(
        "with remote storage, structural_novelty.reference must be one file in the storage: a tar of the"
        f" folder of structures (tar -cf structures.tar -C FOLDER .), not {STRUCTURE_REFERENCE!r}"
    )
STRUCTURAL_FILE = f"{OUTDIR}/structural/{{drop}}/{{chunk}}.parquet"
CLUSTER_MEMBERS = f"{OUTDIR}/clusters/{{drop}}/members.parquet"
CLUSTER_STATE = f"{OUTDIR}/clusters/{{drop}}/state.tar"
CLUSTERS_TABLE = f"{OUTDIR}/clusters/clusters.parquet"


def all_structural(wildcards):
    """Empty when no structure reference is configured: the step is skipped."""
    if not STRUCTURE_REFERENCE:
        return []
    return [STRUCTURAL_FILE.format(drop=drop, chunk=chunk) for drop in DROPS for chunk in drop_chunks(drop)]


def structure_reference_mb(input):
    """Size of the structure reference build (3Di database and coordinates), or packed, in MB."""
    if not LOCAL_FILES:
        return input.size_mb  # the packed build, with the chunk's predictions
    reference_json = Path(input.reference)
    build = reference_json.parent / json.loads(reference_json.read_text())["path"]
    return sum(path.stat().st_size for path in build.rglob("*") if path.is_file()) / 1e6


def drop_structural(wildcards):
    """A drop's structural novelty files (none without a structure reference)."""
    if not STRUCTURE_REFERENCE:
        return []
    return [STRUCTURAL_FILE.format(drop=wildcards.drop, chunk=chunk) for chunk in drop_chunks(wildcards.drop)]


def drop_predictions(wildcards):
    return [
        PREDICTIONS_FILE.format(drop=wildcards.drop, chunk=chunk) for chunk in drop_chunks(wildcards.drop)
    ]


def previous_cluster_state(wildcards):
    """Clusters grow drop by drop: a drop's clustering updates the one of the drop before it."""
    position = DROPS.index(wildcards.drop)
    return CLUSTER_STATE.format(drop=DROPS[position - 1]) if position else []
