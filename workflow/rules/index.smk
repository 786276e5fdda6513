# The atlas index. A script, not a shell command: at scale its inputs are 10^5 paths, more than one shell
# command line holds. The outputs are staged files; atlas/index.parquet and atlas/atlas.duckdb, which
# readers open, are swapped in by renames once both are complete (atlas/index.py).
LOOKUP_BY_ID = f"{OUTDIR}/atlas/lookup/{{drop}}.by_id.parquet"
LOOKUP_BY_CHECKSUM = f"{OUTDIR}/atlas/lookup/{{drop}}.by_checksum.parquet"
DROP_OUTCOMES = f"{OUTDIR}/atlas/parts/{{drop}}.outcomes.parquet"


# Once per drop: its records sorted by id and by checksum, so a lookup reads one row group per drop.
rule drop_lookup:
    input:
        manifest=MANIFEST_FILE,
    output:
        by_id=LOOKUP_BY_ID,
        by_checksum=LOOKUP_BY_CHECKSUM,
    log:
        f"{OUTDIR}/logs/lookup/{{drop}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/lookup/{{drop}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(2000, min(16000, int(4 * input.size_mb))) * attempt,
    shell:
        "export ATLAS_LOOKUP_MEMORY_LIMIT=$(({resources.mem_mb} * 3 / 4))MB; "
        "atlas lookup --manifest {input.manifest:q} --by-id {output.by_id:q}"
        " --by-checksum {output.by_checksum:q} > {log:q} 2>&1"


# Once per drop (and again when its files or the thresholds change): its records' outcomes, so the index
# of all drops reads one compact file per drop, and a new drop never makes the earlier ones be read again.
rule drop_outcomes:
    input:
        manifest=MANIFEST_FILE,
        predictions=drop_predictions,
        novelty=drop_novelty,
        structural=drop_structural,
    output:
        part=DROP_OUTCOMES,
    log:
        f"{OUTDIR}/logs/outcomes/{{drop}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/outcomes/{{drop}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(32000, int(input.size_mb / 10))) * attempt,
    params:
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        # a version of the code with other outcome columns makes the parts again (no refold); a function, so
        # only the scheduling process computes it, not every job's start-up
        outcome_schema=lambda wildcards: outcome_schema(),
    script:
        "../scripts/drop_outcomes.py"


rule atlas_index:
    input:
        manifests=all_manifests,
        lookups=expand(LOOKUP_BY_ID, drop=DROPS) + expand(LOOKUP_BY_CHECKSUM, drop=DROPS),
        parts=expand(DROP_OUTCOMES, drop=DROPS),
        predictions=all_predictions,
        novelty=all_novelty,
        structural=all_structural,
        clusters=CLUSTERS_TABLE,
    output:
        index=f"{OUTDIR}/atlas/staged/index.parquet",
        database=f"{OUTDIR}/atlas/staged/atlas.duckdb",
    log:
        f"{OUTDIR}/logs/atlas_index.log",
    benchmark:
        f"{OUTDIR}/benchmarks/atlas_index.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(32000, int(input.size_mb / 10))) * attempt,
    params:
        drops=DROPS,
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        novelty=bool(NOVELTY_REFERENCE),
        novelty_queries=config["novelty"]["queries"],
        structural=bool(STRUCTURE_REFERENCE),
    script:
        "../scripts/atlas_index.py"
