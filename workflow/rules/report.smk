# The atlas report: summary.json, PNG plots and a self-contained index.html under {OUTDIR}/report/.
# The plots and the page are also registered for `snakemake --report report.html` (category "Atlas").
# A script, not a shell command: at scale its inputs are 10^5 paths. It reads only these declared inputs
# (fold throughput from the predictions files' metadata); every setting comes from the config.
REPORT_DIR = f"{OUTDIR}/report"


rule report:
    input:
        index=rules.atlas_index.output.index,
        manifests=all_manifests,
        predictions=all_predictions,
        novelty=all_novelty,
        structural=all_structural,
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
        structure_tm=report(
            f"{REPORT_DIR}/structure_tm.png",
            caption="../report/structure_tm.rst",
            category="Atlas",
            labels={"figure": "TM-score to the nearest reference structure"},
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
        min_plddt=config["min_plddt"],
        min_ptm=config["min_ptm"],
        novelty=bool(NOVELTY_REFERENCE),
        max_identity=config["novelty"]["max_identity"],
        min_coverage=config["novelty"]["min_coverage"],
        min_length=config["min_length"],
        max_length=config["max_length"],
        structural=bool(STRUCTURE_REFERENCE),
        min_tm=config["structural_novelty"]["min_tm"],
        novelty_queries=config["novelty"]["queries"],
    script:
        "../scripts/atlas_report.py"
