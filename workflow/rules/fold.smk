rule fold_chunk:
    input:
        # A chunk's name is its content (L0064-00000-<hash>): a chunk rewritten with the same content (a touched
        # drop, a rerun split, a copied outdir) must not refold it, so its time stamp is no trigger.
        fasta=ancient(chunk_fasta(PREDICTIONS_FILE)),
    output:
        predictions=PREDICTIONS_FILE,
    log:
        f"{OUTDIR}/logs/fold/{MODEL_KEY}/{{drop}}/{{chunk}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/fold/{MODEL_KEY}/{{drop}}/{{chunk}}.tsv"
    conda:
        # A CUDA build of PyTorch unless folding on CPU (envs/atlas-cuda.yaml says how to create it on a
        # GPU-less login node)
        "../../envs/atlas.yaml" if config["device"] == "cpu" else "../../envs/atlas-cuda.yaml"
    threads: config["fold_threads"]
    resources:
        gpu=fold_gpus,
        mem_mb=lambda wildcards, attempt: (4000 if config["model"] == "tiny" else 32000) * attempt,
        # How to fold and store, not what: resources are no rerun trigger, so changing the device, the
        # precision of the language model, the batch sizes, the trunk chunking or the structure format never
        # refolds a finished chunk.
        fold_device=config["device"],
        lm_precision=config["lm_precision"],
        max_tokens_per_batch=config["max_tokens_per_batch"],
        max_pair_cells_per_batch=config["max_pair_cells_per_batch"],
        trunk_chunk_size=config["trunk_chunk_size"] or "auto",
        # What is kept beside each prediction, not what is folded: turning it on keeps finished chunks.
        store_pae=int(config["store_pae"]),
        structure_format=config["structure_format"],
    params:
        # Only what changes the results is a param (a rerun trigger), and all of it is in the output path
        # (MODEL_KEY), so a changed model or recycle count makes new files instead of replacing these.
        model=config["model"],
        num_recycles=(
            f"--num-recycles={config['num_recycles']}" if config["num_recycles"] is not None else ""
        ),
    shell:
        # Every name reaches the shell quoted, as one `--option=value` word (a value may start with "-").
        "atlas fold --fasta={input.fasta:q} --output={output.predictions:q}"
        " --drop={wildcards.drop:q} --chunk={wildcards.chunk:q} --model={params.model:q}"
        " {params.num_recycles} --device={resources.fold_device:q} --trunk-chunk-size={resources.trunk_chunk_size:q}"
        " --lm-precision={resources.lm_precision:q} --max-tokens-per-batch={resources.max_tokens_per_batch}"
        " --max-pair-cells-per-batch={resources.max_pair_cells_per_batch} --store-pae={resources.store_pae}"
        " --structure-format={resources.structure_format:q} --threads={threads} > {log:q} 2>&1"
