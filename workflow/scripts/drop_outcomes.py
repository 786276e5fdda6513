"""Rule drop_outcomes: a drop's outcome rows from its declared files (more paths than a shell line holds)."""
# ruff: noqa: F821 - Snakemake defines `snakemake` in a script's namespace

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # this checkout's atlas package

from atlas.index import run_drop_outcomes_step  # noqa: E402

sys.exit(run_drop_outcomes_step(snakemake))
