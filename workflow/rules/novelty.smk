import shutil


rule reference_db:
    input:
        reference=NOVELTY_REFERENCE or [],
    output:
        db=REFERENCE_DB,
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
        "atlas reference-db --reference {input.reference:q} --output {output.db:q}"
        " --cache {params.cache:q} --threads {threads} > {log:q} 2>&1"


rule novelty_search:
    input:
        fastas=novelty_job_fastas,
        db=REFERENCE_DB,
    output:
        chunks=temp(directory(NOVELTY_JOB_DIR)),
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
        chunk_dir=lambda wildcards, input: Path(input.fastas[0]).parent,
        chunks=lambda wildcards: novelty_jobs(wildcards.drop)[0][wildcards.job],
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        sensitivity=config["novelty"]["sensitivity"],
    shell:
        "atlas novelty --chunk-dir {params.chunk_dir:q} --chunks {params.chunks:q}"
        " --output-dir {output.chunks:q} --reference-db {input.db:q}"
        " --max-identity {params.max_identity} --min-coverage {params.min_coverage}"
        " --sensitivity {params.sensitivity} --threads {threads} > {log:q} 2>&1"


rule novelty_chunk:
    input:
        job=novelty_job_of_chunk,
    output:
        novelty=NOVELTY_FILE,
    log:
        f"{OUTDIR}/logs/novelty/{{drop}}/{{chunk}}.copy.log",
    localrule: True
    run:
        shutil.copyfile(Path(input.job) / f"{wildcards.chunk}.parquet", output.novelty)
