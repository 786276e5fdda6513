rule atlas_index:
    input:
        manifests=all_manifests,
        predictions=all_predictions,
        novelty=all_novelty,
    output:
        index=f"{OUTDIR}/atlas/index.parquet",
        database=f"{OUTDIR}/atlas/atlas.duckdb",
    log:
        f"{OUTDIR}/logs/atlas_index.log",
    benchmark:
        f"{OUTDIR}/benchmarks/atlas_index.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(32000, int(input.size_mb / 10))) * attempt,
    params:
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        novelty="--novelty" if NOVELTY_REFERENCE else "--no-novelty",
        drops=DROPS,
        predictions_dir=f"predictions/{MODEL_KEY}",
        outdir=lambda wildcards, output: Path(output.index).parents[1],
    shell:
        "atlas index --outdir {params.outdir:q} --predictions-dir={params.predictions_dir:q} --drops {params.drops:q} --min-plddt {params.min_plddt}"
        " --min-ptm {params.min_ptm} {params.novelty} > {log:q} 2>&1"
