rule reference_db:
    input:
        reference=NOVELTY_REFERENCE or [],
    output:
        db=NOVELTY_DB,
    log:
        f"{OUTDIR}/logs/reference_db.log",
    benchmark:
        f"{OUTDIR}/benchmarks/reference_db.tsv"
    conda:
        "../../envs/atlas.yaml"
    threads: config["novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(64000, int(2 * input.size_mb))) * attempt,
    params:
        cache=lambda wildcards, output: config["novelty"]["reference_cache"] or Path(output.db).parent,
    shell:
        (
            "atlas reference-db --reference {input.reference:q} --output {output.db:q}"
            " --cache {params.cache:q} --threads {threads} > {log:q} 2>&1"
        )
        if LOCAL_FILES
        # Remote storage: built in a folder of its own (relative names), packed into the declared tar without
        # the precomputed k-mer index (`*.idx*`, ~0.9 GB even for a small reference, several times the
        # database at UniRef90 size): each novelty job would download it, and searching without it costs the
        # job the k-mer table of the reference in memory instead.
        else (
            "build=$(mktemp -d {output.db:q}.tmp-XXXXXX); trap 'rm -rf \"$build\"' EXIT; "
            'atlas reference-db --reference {input.reference:q} --output "$build/reference.json"'
            ' --cache "$build" --threads {threads} > {log:q} 2>&1; '
            "tar -cf {output.db:q} --exclude='*.idx' --exclude='*.idx.*' -C \"$build\" ."
        )


rule novelty_search:
    input:
        # ancient FASTAs: chunks are named by content, a rewritten chunk FASTA holds the same sequences (as in
        # fold); a predictions file is new only when its chunk was folded again
        queries=(novelty_job_queries if NOVELTY_SEARCHES_PREDICTIONS else ancient(novelty_job_queries)),
        db=NOVELTY_DB,
    output:
        chunks=temp(NOVELTY_JOB_TAR),
    log:
        f"{OUTDIR}/logs/novelty/{{drop}}/{{job}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/novelty/{{drop}}/{{job}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    threads: config["novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, int(1.5 * reference_db_mb(input))) * attempt,
    params:
        chunk_dir=lambda wildcards, input: Path(input.queries[0]).parent,
        # the chunks' file names (with remote storage their slots'): one Parquet each, named alike
        chunks=lambda wildcards: [
            chunk_file_stem(wildcards.drop, chunk)
            for chunk in novelty_jobs(wildcards.drop)[0][wildcards.job]
        ],
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        sensitivity=config["novelty"]["sensitivity"],
    shell:
        # one Parquet per chunk into a folder of its own, then packed into the one output file
        "searched=$(mktemp -d {output.chunks:q}.tmp-XXXXXX); trap 'rm -rf \"$searched\"' EXIT; "
        + (
            "db={input.db:q}; "
            if LOCAL_FILES
            else 'tar -xf {input.db:q} -C "$searched"; db="$searched/reference.json"; '
        )
        + "atlas novelty --chunks {params.chunks:q}"
        + (  # the queries: the confident predictions, or every sequence of the chunk FASTAs
            " --predictions {input.queries:q} --min-plddt {params.min_plddt} --min-ptm {params.min_ptm}"
            if NOVELTY_SEARCHES_PREDICTIONS
            else " --chunk-dir {params.chunk_dir:q}"
        )
        + ' --output-dir "$searched/chunks" --reference-db "$db"'
        " --max-identity {params.max_identity} --min-coverage {params.min_coverage}"
        " --sensitivity {params.sensitivity} --threads {threads} > {log:q} 2>&1; "
        'tar -cf {output.chunks:q} -C "$searched/chunks" .'


rule novelty_chunk:
    input:
        job=novelty_job_of_chunk,
    output:
        novelty=NOVELTY_FILE,
    log:
        f"{OUTDIR}/logs/novelty/{{drop}}/{{chunk}}.copy.log",
    localrule: True
    params:
        # recorded, not read: a change of what decides a chunk's rows searches it again (the search job's
        # tar is temporary, so its own params are no trigger once its chunks are copied out)
        search=NOVELTY_SEARCH_SETTINGS,
    run:
        copy_from_tar(
            input.job, f"./{chunk_file_stem(wildcards.drop, wildcards.chunk)}.parquet", output.novelty
        )
