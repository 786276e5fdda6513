checkpoint split_drop:
    input:
        fasta=drop_fasta,
        earlier=earlier_manifests,
    output:
        manifest=MANIFEST_FILE,
    log:
        f"{OUTDIR}/logs/split/{{drop}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/split/{{drop}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(3000, min(16000, int(input.size_mb))) * attempt,
    params:
        min_length=config["min_length"],
        max_length=config["max_length"],
        buckets=config["length_buckets"],
        chunk_residues=config["chunk_residues"],
    shell:
        # DuckDB's memory cap follows the job's allocation (and grows with it on a retry). Every name reaches
        # the shell quoted, and as `--option=value` where a value may start with "-" (a drop `-x.fasta`).
        "export ATLAS_SPLIT_MEMORY_LIMIT=$(({resources.mem_mb} * 3 / 4))MB; "
        "atlas split --fasta={input.fasta:q} --drop={wildcards.drop:q} --manifest={output.manifest:q}"
        " --min-length={params.min_length} --max-length={params.max_length}"
        " --length-buckets {params.buckets} --chunk-residues={params.chunk_residues}"
        " --earlier-manifests {input.earlier:q} > {log:q} 2>&1"
