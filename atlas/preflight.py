"""Checks of a workflow configuration made once, before any job starts, and the names derived from it.

`check_config` collects every problem it finds (the key, the value, why) and raises one PreflightError, so a
bad config stops the run before Snakemake schedules (or deletes) anything. `predictions_key` names the
prediction set of a model (and recycle count): predictions of different models live apart, so changing
`model:` adds work and deletes none. `drop_entries` turns the `drops` list (file paths or {name, path}) into
(name, path) pairs.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

DROP_SUFFIXES = (".fasta.gz", ".faa.gz", ".fa.gz", ".fasta", ".faa", ".fa")
# Folders of the source tree an outdir must not be in or over (it would mix results with code).
SOURCE_FOLDERS = (
    ".git",
    ".snakemake",
    ".venv",
    "atlas",
    "bench",
    "docs",
    "envs",
    "example",
    "profiles",
    "tests",
    "workflow",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class PreflightError(ValueError):
    """The configuration cannot run; the message lists every problem, one per line."""


def drop_name(path: str) -> str:
    """A drop's default name: its file name without .fa/.faa/.fasta[.gz] (docs/SPEC.md)."""
    name = os.path.basename(path)
    for suffix in DROP_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise PreflightError(f"drops: file {path!r} does not end in one of {', '.join(DROP_SUFFIXES)}")


def drop_entries(drops: Iterable[str | dict]) -> list[tuple[str, str]]:
    """(name, path) of each drop, in arrival order; a drop is a path or {name, path}. Names must be unique."""
    entries = [
        (drop["name"], drop["path"]) if isinstance(drop, dict) else (drop_name(drop), drop) for drop in drops
    ]
    seen: dict[str, str] = {}
    for name, path in entries:
        if name in seen:
            raise PreflightError(
                f"drops: {seen[name]!r} and {path!r} both have the drop name {name!r};"
                " give them names: `- {name: NAME, path: PATH}`"
            )
        seen[name] = path
    return entries


def predictions_key(model: str, num_recycles: int | None) -> str:
    """The folder name of a model's predictions: `tiny`, `facebook--esmfold_v1` (a hub id, as the Hugging
    Face cache spells it), `<dir name>-<hash of its absolute path>` (a local model directory); `-r<N>` is
    appended when num_recycles is set. Only what changes results is in the key."""
    if model == "tiny" or HUB_ID.match(model) and not Path(model).expanduser().exists():
        key = model.replace("/", "--")
    else:
        path = Path(model).expanduser().resolve()
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("_.") or "model"
        key = f"{slug}-{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    return key if num_recycles is None else f"{key}-r{num_recycles}"


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def outdir_problems(outdir: str, source_root: Path) -> list[str]:
    """Why `outdir` cannot hold an atlas: empty, the source tree (or above it), a source folder, a file."""
    if not outdir.strip():
        return ["outdir: empty; give a folder for the results, e.g. `outdir: results`"]
    resolved = Path(outdir).expanduser().resolve()
    root = source_root.resolve()
    if _inside(root, resolved):
        return [f"outdir: {outdir!r} is the workflow's source tree {str(root)!r} or a folder above it"]
    for folder in SOURCE_FOLDERS:
        if _inside(resolved, root / folder):
            return [f"outdir: {outdir!r} is inside the workflow's source folder {str(root / folder)!r}"]
    if resolved.exists() and not resolved.is_dir():
        return [f"outdir: {outdir!r} exists and is not a folder"]
    return []


def length_problems(config: dict) -> list[str]:
    from atlas.chunking import SplitError, check_settings

    try:
        check_settings(
            config["min_length"], config["max_length"], config["length_buckets"], config["chunk_residues"]
        )
    except SplitError as error:
        return [f"min_length/max_length/length_buckets/chunk_residues: {error}"]
    return []


def model_problems(model: str) -> list[str]:
    """Whether `model` resolves here (tiny, a local directory, a hub id in the local cache)."""
    from atlas.model import ModelLoadError, resolve_model

    try:
        resolve_model(model)
    except ModelLoadError as error:
        return [f"model: {error}"]
    return []


def check_config(
    config: dict, source_root: Path, *, local_files: bool = True, check_model: bool = True
) -> None:
    """Every problem of a (schema-validated) config, raised as one PreflightError. `local_files`: the
    drops and the outdir are paths on this machine (not in remote storage); `check_model`: the fold jobs
    see this machine's model cache (not so on a cluster without a shared filesystem)."""
    problems: list[str] = []
    try:
        entries = drop_entries(config["drops"])
    except PreflightError as error:
        problems.append(str(error))
        entries = []
    if local_files:
        problems += outdir_problems(config["outdir"], source_root)
        missing = [(name, path) for name, path in entries if not Path(path).is_file()]
        problems += [f"drops: {name!r}: file {path!r} does not exist" for name, path in missing]
    elif not config["outdir"].strip():
        problems.append("outdir: empty; give a folder for the results, e.g. `outdir: results`")
    problems += length_problems(config)
    if check_model:
        problems += model_problems(config["model"])
    if problems:
        raise PreflightError(
            "the configuration cannot run (nothing was started):\n" + "\n".join(f"  - {p}" for p in problems)
        )
