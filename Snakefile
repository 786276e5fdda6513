# Metagenomic protein structure atlas: drops -> chunks -> ESMFold -> novelty -> DuckDB index -> report.
# The product contract (config keys, outputs) is docs/SPEC.md; the logic lives in the `atlas` package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/fold.smk"
include: "workflow/rules/novelty.smk"
include: "workflow/rules/structural_common.smk"
include: "workflow/rules/structural.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    folded,
    report,


rule all:
    default_target: True
    input:
        f"{OUTDIR}/atlas/staged/index.parquet",
        f"{OUTDIR}/atlas/staged/atlas.duckdb",
        f"{OUTDIR}/report/summary.json",
        f"{OUTDIR}/report/index.html",
        # every drop's split is a target of its own: a job whose inputs wait on a checkpoint (the index, the
        # report) does not by itself make Snakemake split a new drop
        all_manifests,
        all_structural,
        CLUSTERS_TABLE,


# Every chunk folded (and searched against the reference), without the index and the report: e.g. to fold on a
# cluster now and build the atlas later.
rule folded:
    input:
        all_manifests,
        all_predictions,
        all_novelty,
