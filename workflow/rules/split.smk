checkpoint split_drop:
    input:
        fasta=drop_fasta,
        earlier=earlier_manifests,
    output:
        manifest=MANIFEST_FILE,
        # with remote storage only (else none): the chunk FASTAs as slot files named in advance
        slots=SPLIT_SLOTS,
    log:
        f"{OUTDIR}/logs/split/{{drop}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/split/{{drop}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        # bounded whatever the drop's size: DuckDB is capped (ATLAS_SPLIT_MEMORY_LIMIT, 320 MB by default)
        # and spills to disk; the parsing workers hold a block each
        mem_mb=lambda wildcards, attempt: 1500 * attempt,
    params:
        min_length=config["min_length"],
        max_length=config["max_length"],
        buckets=config["length_buckets"],
        chunk_residues=config["chunk_residues"],
        max_chunks=config["max_chunks_per_drop"],
        slots=lambda wildcards, output: (
            f"--slot-dir={shlex_quote(str(Path(output.slots[0]).parent))} --slots={len(output.slots)}"
            if output.slots
            else ""
        ),
    shell:
        # Every name reaches the shell quoted, and as `--option=value` where a value may start with "-" (a
        # drop `-x.fasta`).
        "atlas split --fasta={input.fasta:q} --drop={wildcards.drop:q} --manifest={output.manifest:q}"
        " --min-length={params.min_length} --max-length={params.max_length}"
        " --length-buckets {params.buckets} --chunk-residues={params.chunk_residues}"
        " --max-chunks={params.max_chunks}"
        " --earlier-manifests {input.earlier:q} {params.slots} > {log:q} 2>&1"
