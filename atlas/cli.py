"""The `atlas` command: user subcommands (query, export, stats, report, serve) and the workflow steps the
rules call (the index and the report steps are called through workflow/scripts/, with their file lists
in-process).

Each subcommand lives in the module that does its job and is imported only when used, so `atlas query`
never pays for importing torch.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys

# subcommand -> (module, function taking argv, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "query": ("atlas.query", "query_main", "read-only SQL over atlas/atlas.duckdb"),
    "export": ("atlas.export", "export_main", "write structures (mmCIF, PDB, Foldcomp), FASTA or metadata"),
    "serve": ("atlas.serve", "serve_main", "a local read-only web explorer of the atlas"),
    "stats": ("atlas.stats", "stats_main", "counts per stage and the accounting invariant"),
    "report": ("atlas.report", "report_main", "summary.json, plots and index.html under report/"),
    "split": ("atlas.chunking", "split_main", "workflow step: split a drop into length-bucketed chunks"),
    "fold": ("atlas.fold", "fold_main", "workflow step: fold one chunk with ESMFold"),
    "reference-db": ("atlas.novelty", "reference_db_main", "workflow step: build the MMseqs2 reference"),
    "novelty": ("atlas.novelty", "novelty_main", "workflow step: search one chunk against the reference"),
    "structure-reference": (
        "atlas.structural",
        "reference_main",
        "workflow step: build the structure reference (3Di + coordinates)",
    ),
    "structural": ("atlas.structural", "structural_main", "workflow step: structural novelty of one chunk"),
    "cluster-drop": (
        "atlas.clusters",
        "cluster_drop_main",
        "workflow step: cluster one drop's confident predictions",
    ),
    "clusters-table": (
        "atlas.clusters",
        "clusters_table_main",
        "workflow step: the cluster table of every drop",
    ),
    "index": ("atlas.index", "index_main", "build the atlas of a finished outdir by hand"),
    "lookup": ("atlas.lookup", "lookup_main", "workflow step: a drop's manifest sorted by id and checksum"),
}


# Commands that do no linear algebra (see main).
SINGLE_THREADED_BLAS = {"split", "lookup"}
# Commands whose process ends as soon as they return, their outputs closed and the output streams flushed
# (run): tearing down their imports (numba, pyarrow, DuckDB) at the interpreter's exit took 0.25 s.
QUICK_EXIT = {"split"}
# Commands that never use pandas (run): pyarrow imports it at its first array, to check whether the values
# are pandas objects (0.3 CPU-s, while the split's workers wait on the GIL); where pandas cannot be imported,
# pyarrow takes the values as they are.
WITHOUT_PANDAS = {"split"}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: atlas [--version] COMMAND [options]   (atlas COMMAND --help for its options)", ""]
    lines.append("commands:")
    lines += [f"  {name:<{width}}  {help_text}" for name, (_, _, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        from atlas import __version__

        print(f"atlas {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"atlas: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, function_name, _ = COMMANDS[command]
    if command in SINGLE_THREADED_BLAS:
        # OpenBLAS (numpy's, scipy's through numba) starts a thread per CPU on import, and they spin
        # before they sleep: about 0.2 CPU-s for a command that never multiplies a matrix.
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    gc.disable()  # imports make many objects and no garbage: collecting during them is wasted work
    try:
        module = importlib.import_module(module_name)
    finally:
        gc.enable()
    return int(getattr(module, function_name)(rest) or 0)


def run() -> None:
    """The `atlas` program (its console script, `python -m atlas`): main(), then the exit."""
    if sys.argv[1:2] and sys.argv[1] in WITHOUT_PANDAS:
        sys.meta_path.insert(0, _WithoutPandas())  # for this process only, which ends with the command
    code = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)


class _WithoutPandas:
    """An import hook under which pandas is not found (WITHOUT_PANDAS)."""

    def find_spec(self, name, path=None, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not used by this command", name=name)
        return None
