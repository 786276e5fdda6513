import shutil
import tarfile


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
        # ancient: chunks are named by content, a rewritten chunk FASTA holds the same sequences (as in fold)
        fastas=ancient(novelty_job_fastas),
        db=REFERENCE_DB,
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
        chunk_dir=lambda wildcards, input: Path(input.fastas[0]).parent,
        chunks=lambda wildcards: novelty_jobs(wildcards.drop)[0][wildcards.job],
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        sensitivity=config["novelty"]["sensitivity"],
    shell:
        # one Parquet per chunk into a folder of its own, then packed into the one output file
        "searched=$(mktemp -d {output.chunks:q}.tmp-XXXXXX); trap 'rm -rf \"$searched\"' EXIT; "
        "atlas novelty --chunk-dir {params.chunk_dir:q} --chunks {params.chunks:q}"
        ' --output-dir "$searched" --reference-db {input.db:q}'
        " --max-identity {params.max_identity} --min-coverage {params.min_coverage}"
        " --sensitivity {params.sensitivity} --threads {threads} > {log:q} 2>&1; "
        'tar -cf {output.chunks:q} -C "$searched" .' 


rule novelty_chunk:
    input:
        job=novelty_job_of_chunk,
    output:
        novelty=NOVELTY_FILE,
    log:
        f"{OUTDIR}/logs/novelty/{{drop}}/{{chunk}}.copy.log",
    localrule: True
    run:
        with tarfile.open(input.job) as job, open(output.novelty, "wb") as novelty:
            shutil.copyfileobj(job.extractfile(f"./{wildcards.chunk}.parquet"), novelty)
