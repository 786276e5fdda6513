rule fold_chunk:
    input:
        fasta=CHUNK_FASTA,
    output:
        predictions=PREDICTIONS_FILE,
    params:
        model=config["model"],
        num_recycles=(
            f"--num-recycles {config['num_recycles']}" if config["num_recycles"] is not None else ""
        ),
        trunk_chunk_size=(
            f"--trunk-chunk-size {config['trunk_chunk_size']}" if config["trunk_chunk_size"] is not None else ""
        ),
    threads: config["fold_threads"]
    resources:
        gpu=fold_gpus,
        mem_mb=lambda wildcards, attempt: (4000 if config["model"] == "tiny" else 32000) * attempt,
        # How to fold and store, not what: resources are no rerun trigger (params are), so changing the device,
        # the batch sizes or the structure format never refolds a finished chunk.
        fold_device=config["device"],
        lm_precision=config["lm_precision"],
        max_tokens_per_batch=config["max_tokens_per_batch"],
        max_pair_cells_per_batch=config["max_pair_cells_per_batch"],
        structure_format=config["structure_format"],
    log:
        f"{OUTDIR}/logs/fold/{{drop}}/{{chunk}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/fold/{{drop}}/{{chunk}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    shell:
        "atlas fold --fasta {input.fasta:q} --output {output.predictions:q}"
        " --drop {wildcards.drop} --chunk {wildcards.chunk} --model {params.model:q}"
        " --device {resources.fold_device} {params.num_recycles} {params.trunk_chunk_size}"
        " --lm-precision {resources.lm_precision} --max-tokens-per-batch {resources.max_tokens_per_batch}"
        " --max-pair-cells-per-batch {resources.max_pair_cells_per_batch} --threads {threads}"
        " --structure-format {resources.structure_format} > {log:q} 2>&1"
