rule fold_chunk:
    input:
        fasta=f"{OUTDIR}/chunks/{{drop}}/{{chunk}}.fasta",
    output:
        predictions=f"{OUTDIR}/predictions/{{drop}}/{{chunk}}.parquet",
    params:
        model=config["model"],
        device=config["device"],
        num_recycles=(
            f"--num-recycles {config['num_recycles']}" if config["num_recycles"] is not None else ""
        ),
        trunk_chunk_size=(
            f"--trunk-chunk-size {config['trunk_chunk_size']}" if config["trunk_chunk_size"] is not None else ""
        ),
        lm_precision=config["lm_precision"],
        max_tokens=config["max_tokens_per_batch"],
        max_pair_cells=config["max_pair_cells_per_batch"],
    threads: config["fold_threads"]
    resources:
        gpu=1 if fold_uses_gpu() else 0,
    log:
        f"{OUTDIR}/logs/fold/{{drop}}/{{chunk}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/fold/{{drop}}/{{chunk}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    shell:
        "atlas fold --fasta {input.fasta:q} --output {output.predictions:q}"
        " --drop {wildcards.drop} --chunk {wildcards.chunk} --model {params.model:q}"
        " --device {params.device} {params.num_recycles} {params.trunk_chunk_size}"
        " --lm-precision {params.lm_precision} --max-tokens-per-batch {params.max_tokens}"
        " --max-pair-cells-per-batch {params.max_pair_cells} --threads {threads} > {log:q} 2>&1"
