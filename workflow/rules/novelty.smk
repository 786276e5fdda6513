rule reference_db:
    input:
        reference=NOVELTY_REFERENCE or [],
    output:
        db=REFERENCE_DB,
    params:
        cache=config["novelty"]["reference_cache"] or f"{OUTDIR}/reference",
    threads: config["novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(64000, int(2 * input.size_mb))) * attempt,
    log:
        f"{OUTDIR}/logs/reference_db.log",
    benchmark:
        f"{OUTDIR}/benchmarks/reference_db.tsv"
    conda:
        "../../envs/atlas.yaml"
    shell:
        "atlas reference-db --reference {input.reference:q} --output {output.db:q}"
        " --cache {params.cache:q} --threads {threads} > {log:q} 2>&1"


rule novelty_chunk:
    input:
        fasta=CHUNK_FASTA,
        db=REFERENCE_DB,
    output:
        novelty=NOVELTY_FILE,
    params:
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        sensitivity=config["novelty"]["sensitivity"],
    threads: config["novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, int(1.5 * reference_db_mb(input))) * attempt,
    log:
        f"{OUTDIR}/logs/novelty/{{drop}}/{{chunk}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/novelty/{{drop}}/{{chunk}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    shell:
        "atlas novelty --fasta {input.fasta:q} --reference-db {input.db:q} --output {output.novelty:q}"
        " --max-identity {params.max_identity} --min-coverage {params.min_coverage}"
        " --sensitivity {params.sensitivity} --threads {threads} > {log:q} 2>&1"
