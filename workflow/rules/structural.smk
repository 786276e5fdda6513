# Structural novelty (atlas/structural.py) and clusters (atlas/clusters.py) of the confident predictions;
# paths and input functions in structural_common.smk.


# ancient: a touched or copied reference folder must not re-search every chunk; a changed reference is taken up
# with `--forcerun structure_reference` (a build of the same content is reused, a new content is built).
rule structure_reference:
    input:
        reference=ancient(STRUCTURE_REFERENCE) if STRUCTURE_REFERENCE else [],
    output:
        reference=STRUCTURE_REFERENCE_DB,
    log:
        f"{OUTDIR}/logs/structure_reference.log",
    benchmark:
        f"{OUTDIR}/benchmarks/structure_reference.tsv"
    conda:
        "../../envs/atlas.yaml"
    threads: config["structural_novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    shell:
        (
            "atlas structure-reference --reference {input.reference:q} --output {output.reference:q}"
            " --threads {threads} > {log:q} 2>&1"
        )
        if LOCAL_FILES
        # Remote storage: the structure folder arrives as one tar; the build (reference.json and the folder it
        # names, relative to it) leaves as one tar
        else (
            "build=$(mktemp -d {output.reference:q}.tmp-XXXXXX); trap 'rm -rf \"$build\"' EXIT; "
            'mkdir "$build/source" "$build/reference"; tar -xf {input.reference:q} -C "$build/source"; '
            'atlas structure-reference --reference "$build/source" --output "$build/reference/reference.json"'
            " --threads {threads} > {log:q} 2>&1; "
            'tar -cf {output.reference:q} -C "$build/reference" .'
        )


rule structural_chunk:
    input:
        predictions=PREDICTIONS_FILE,
        reference=STRUCTURE_REFERENCE_DB,
    output:
        structural=STRUCTURAL_FILE,
    log:
        f"{OUTDIR}/logs/structural/{{drop}}/{{chunk}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/structural/{{drop}}/{{chunk}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    threads: config["structural_novelty"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, int(1.5 * structure_reference_mb(input))) * attempt,
    params:
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        min_tm=config["structural_novelty"]["min_tm"],
        top_k=config["structural_novelty"]["top_k"],
        sensitivity=config["structural_novelty"]["sensitivity"],
        max_seqs=config["structural_novelty"]["max_seqs"],
        prefilter_mode=config["structural_novelty"]["prefilter_mode"],
    shell:
        (
            "reference={input.reference:q}; "
            if LOCAL_FILES
            else "unpacked=$(mktemp -d {output.structural:q}.tmp-XXXXXX); trap 'rm -rf \"$unpacked\"' EXIT; "
            'tar -xf {input.reference:q} -C "$unpacked"; reference="$unpacked/reference.json"; '
        )
        + 'atlas structural --predictions {input.predictions:q} --reference "$reference"'
        " --output {output.structural:q} --min-plddt {params.min_plddt} --min-ptm {params.min_ptm}"
        " --min-tm {params.min_tm} --top-k {params.top_k} --sensitivity {params.sensitivity}"
        " --max-seqs {params.max_seqs} --prefilter-mode {params.prefilter_mode} --threads {threads}"
        " > {log:q} 2>&1"


rule cluster_drop:
    input:
        manifest=MANIFEST_FILE,
        predictions=drop_predictions,
        previous=previous_cluster_state,
    output:
        members=CLUSTER_MEMBERS,
        state=CLUSTER_STATE,
    log:
        f"{OUTDIR}/logs/clusters/{{drop}}.log",
    benchmark:
        f"{OUTDIR}/benchmarks/clusters/{{drop}}.tsv"
    conda:
        "../../envs/atlas.yaml"
    threads: config["clusters"]["threads"]
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, int(4 * input.size_mb)) * attempt,
    params:
        previous=lambda wildcards, input: (
            f"--previous {shlex_quote(input.previous)}" if input.previous else ""
        ),
        # the folder the declared predictions are in on this machine (with remote storage: their local copies)
        predictions_dir=lambda wildcards, input: Path(
            input.predictions[0]
            if input.predictions
            else PREDICTIONS_FILE.format(drop=wildcards.drop, chunk="x")
        ).parent,
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        min_seq_id=config["clusters"]["min_seq_id"],
        coverage=config["clusters"]["coverage"],
        kmer_per_seq=config["clusters"]["kmer_per_seq"],
    shell:
        "atlas cluster-drop --manifest {input.manifest:q} --predictions-dir {params.predictions_dir:q}"
        " {params.previous} --members {output.members:q} --state {output.state:q}"
        " --min-plddt {params.min_plddt} --min-ptm {params.min_ptm} --min-seq-id {params.min_seq_id}"
        " --coverage {params.coverage} --kmer-per-seq {params.kmer_per_seq} --threads {threads} > {log:q} 2>&1"


rule clusters_table:
    input:
        members=[CLUSTER_MEMBERS.format(drop=drop) for drop in DROPS],
    output:
        table=CLUSTERS_TABLE,
    log:
        f"{OUTDIR}/logs/clusters_table.log",
    benchmark:
        f"{OUTDIR}/benchmarks/clusters_table.tsv"
    conda:
        "../../envs/atlas.yaml"
    resources:
        mem_mb=lambda wildcards, input, attempt: max(4000, min(32000, int(2 * input.size_mb))) * attempt,
    params:
        members_dir=lambda wildcards, output: Path(output.table).parent,
        drops=" ".join(shlex_quote(drop) for drop in DROPS),
    shell:
        "atlas clusters-table --members-dir {params.members_dir:q} --drops {params.drops}"
        " --output {output.table:q} > {log:q} 2>&1"
