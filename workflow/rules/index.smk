# The atlas index. A script, not a shell command: at scale its inputs are 10^5 paths, more than one shell
# command line holds. The outputs are staged files; atlas/index.parquet and atlas/atlas.duckdb, which
# readers open, are swapped in by renames once both are complete (atlas/index.py).
rule atlas_index:
    input:
        manifests=all_manifests,
        predictions=all_predictions,
        novelty=all_novelty,
    output:
        index=f"{OUTDIR}/atlas/staged/index.parquet",
        database=f"{OUTDIR}/atlas/staged/atlas.duckdb",
    params:
        drops=DROPS,
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        novelty=bool(NOVELTY_REFERENCE),
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(32000, int(input.size_mb / 10))) * attempt,
    log:
        f"{OUTDIR}/logs/atlas_index.log",
    benchmark:
        f"{OUTDIR}/benchmarks/atlas_index.tsv"
    conda:
        "../../envs/atlas.yaml"
    script:
        "../scripts/atlas_index.py"
