"""Rule report: the report of the declared inputs (a file list no shell command line could hold)."""
# ruff: noqa: F821 - Snakemake defines `snakemake` in a script's namespace

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # this checkout's atlas package

from atlas.report import run_report_step  # noqa: E402

sys.exit(run_report_step(snakemake))
