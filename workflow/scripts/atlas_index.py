"""Rule atlas_index: the atlas from the declared inputs (a file list no shell command line holds)."""
# ruff: noqa: F821 - Snakemake defines `snakemake` in a script's namespace

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # this checkout's atlas package

from atlas.index import run_index_step  # noqa: E402

sys.exit(run_index_step(snakemake))
