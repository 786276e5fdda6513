# Metagenomic protein structure atlas: drops -> chunks -> ESMFold -> novelty -> DuckDB index -> report.
# The product contract (config keys, outputs) is docs/SPEC.md; the logic lives in the `atlas` package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/fold.smk"
include: "workflow/rules/novelty.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    report,
    predictions,
    novelty,


rule all:
    input:
        f"{OUTDIR}/atlas/index.parquet",
        f"{OUTDIR}/atlas/atlas.duckdb",
        f"{OUTDIR}/report/summary.json",
        f"{OUTDIR}/report/index.html",
    default_target: True


# Stage targets: `snakemake predictions` folds every chunk and stops there; `snakemake novelty` adds novelty.
rule predictions:
    input:
        all_predictions,


rule novelty:
    input:
        all_novelty,
