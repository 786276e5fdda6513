checkpoint split_drop:
    input:
        fasta=drop_fasta,
        earlier=earlier_manifests,
    output:
        manifest=MANIFEST_FILE,
        # with remote storage only (else empty): the chunk FASTAs packed into files named in advance
        shards=SPLIT_SHARDS,
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
    shell:
        # Every name reaches the shell quoted, and as `--option=value` where a value may start with "-" (a
        # drop `-x.fasta`).
        "atlas split --fasta={input.fasta:q} --drop={wildcards.drop:q} --manifest={output.manifest:q}"
        " --min-length={params.min_length} --max-length={params.max_length}"
        " --length-buckets {params.buckets} --chunk-residues={params.chunk_residues}"
        " --max-chunks={params.max_chunks}"
        " --earlier-manifests {input.earlier:q} --shards {output.shards:q} > {log:q} 2>&1"


if not LOCAL_FILES:

    # One chunk FASTA out of its shard (reads the chunk's row group only). The chunks of a shard run as one
    # group job on a cluster, which retrieves the shard once.
    rule chunk_from_shard:
        input:
            shard=chunk_shard,
        output:
            fasta=CHUNK_FASTA,
        log:
            f"{OUTDIR}/logs/chunks/{{drop}}/{{chunk}}.log",
        group:
            chunk_group
        run:
            from atlas.chunkstore import extract_chunk

            size = extract_chunk(input.shard, wildcards.chunk, output.fasta)
            Path(log[0]).write_text(f"{output.fasta}: {size} bytes from {input.shard}\n")
