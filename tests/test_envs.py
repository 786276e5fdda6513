"""The conda environment for cluster users lists the same packages as pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names of the PyPI packages whose names differ there
CONDA_NAME = {"torch": "pytorch", "duckdb": "python-duckdb"}


def requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip().lower()


def test_conda_env_lists_the_pyproject_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {requirement_name(req): req for req in pyproject["project"]["dependencies"]}

    env = yaml.safe_load((ROOT / "envs" / "atlas.yaml").read_text())
    conda = {}
    pip = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip.update({requirement_name(req): req for req in entry["pip"]})
        else:
            conda[requirement_name(entry)] = entry
    conda.pop("python")
    conda.pop("pip")

    listed = {name: req for name, req in pip.items()}
    reverse = {conda_name: pypi for pypi, conda_name in CONDA_NAME.items()}
    listed.update({reverse.get(name, name): req for name, req in conda.items()})
    assert set(listed) == set(wanted), "envs/atlas.yaml and pyproject.toml list different packages"
    for name, requirement in wanted.items():
        bound = requirement[len(name) :]
        assert listed[name].endswith(bound), f"{name}: pyproject {requirement!r}, env {listed[name]!r}"


def test_gpu_env_is_the_cpu_env_with_a_cuda_pytorch():
    cpu = yaml.safe_load((ROOT / "envs" / "atlas.yaml").read_text())
    gpu = yaml.safe_load((ROOT / "envs" / "atlas-cuda.yaml").read_text())
    assert gpu["channels"] == cpu["channels"]
    swapped = [
        requirement.replace("pytorch>=", "pytorch-gpu>=")
        if requirement_name(requirement) == "pytorch"
        else requirement
        for requirement in cpu["dependencies"]
        if isinstance(requirement, str)
    ]
    assert [entry for entry in gpu["dependencies"] if isinstance(entry, str)] == swapped
    assert [e for e in gpu["dependencies"] if isinstance(e, dict)] == [
        e for e in cpu["dependencies"] if isinstance(e, dict)
    ]
