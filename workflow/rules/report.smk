# The atlas report: summary.json, PNG plots and a self-contained index.html under {OUTDIR}/report/.
# The plots and the page are also registered for `snakemake --report report.html` (category "Atlas").
REPORT_DIR = f"{OUTDIR}/report"


rule report:
    input:
        index=f"{OUTDIR}/atlas/index.parquet",
        database=f"{OUTDIR}/atlas/atlas.duckdb",
        manifests=all_manifests,
    output:
        summary=f"{REPORT_DIR}/summary.json",
        html=report(
            f"{REPORT_DIR}/index.html",
            caption="../report/index.rst",
            category="Atlas",
            labels={"figure": "atlas report page"},
        ),
        plddt_histogram=report(
            f"{REPORT_DIR}/plddt_histogram.png",
            caption="../report/plddt_histogram.rst",
            category="Atlas",
            labels={"figure": "mean pLDDT"},
        ),
        plddt_ptm_density=report(
            f"{REPORT_DIR}/plddt_ptm_density.png",
            caption="../report/plddt_ptm_density.rst",
            category="Atlas",
            labels={"figure": "mean pLDDT vs pTM"},
        ),
        length_by_status=report(
            f"{REPORT_DIR}/length_by_status.png",
            caption="../report/length_by_status.rst",
            category="Atlas",
            labels={"figure": "sequence length by status"},
        ),
        novelty_identity=report(
            f"{REPORT_DIR}/novelty_identity.png",
            caption="../report/novelty_identity.rst",
            category="Atlas",
            labels={"figure": "identity to nearest reference hit"},
        ),
        fold_throughput=report(
            f"{REPORT_DIR}/fold_throughput.png",
            caption="../report/fold_throughput.rst",
            category="Atlas",
            labels={"figure": "fold throughput"},
        ),
    log:
        f"{OUTDIR}/logs/report.log",
    benchmark:
        f"{OUTDIR}/benchmarks/report.tsv"
    conda:
        "../../envs/atlas.yaml"
    params:
        drops=DROPS,
        predictions_dir=f"predictions/{MODEL_KEY}",
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        novelty="--novelty" if NOVELTY_REFERENCE else "--no-novelty",
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        min_length=config["min_length"],
        max_length=config["max_length"],
        outdir=lambda wildcards, output: Path(output.summary).parents[1],
    shell:
        "atlas report --outdir {params.outdir:q} --predictions-dir={params.predictions_dir:q} --drops {params.drops:q} --min-plddt {params.min_plddt}"
        " --min-ptm {params.min_ptm} {params.novelty} --max-identity {params.max_identity}"
        " --min-coverage {params.min_coverage} --min-length {params.min_length}"
        " --max-length {params.max_length} > {log:q} 2>&1"
