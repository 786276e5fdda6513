"""config.yaml and the demo config validate against the schema, which fills docs/SPEC.md's defaults."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from atlas.preflight import PreflightError, check_config, drop_entries, outdir_problems, predictions_key

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


@pytest.mark.parametrize("path", ["config.yaml", "example/demo.yaml"])
def test_shipped_configs_validate(path):
    config = yaml.safe_load((ROOT / path).read_text())
    validate(config, SCHEMA, set_default=True)
    for drop in config["drops"]:
        assert (ROOT / drop).exists(), f"{path} names a drop that is not bundled: {drop}"


def test_defaults_are_those_of_the_spec():
    config = {"drops": ["x.fasta"]}
    validate(config, SCHEMA, set_default=True)
    assert config["outdir"] == "results"
    assert config["model"] == "facebook/esmfold_v1"
    assert config["device"] == "auto"
    assert (config["min_length"], config["max_length"]) == (16, 1280)
    assert config["length_buckets"][-1] == 1280
    assert (config["min_plddt"], config["min_ptm"]) == (70, 0.7)
    assert config["novelty"]["reference"] == ""
    assert (config["novelty"]["max_identity"], config["novelty"]["min_coverage"]) == (0.9, 0.8)


def test_partial_novelty_section_gets_the_other_defaults():
    config = {"drops": ["x.fasta"], "novelty": {"reference": "uniref90.fasta.gz"}}
    validate(config, SCHEMA, set_default=True)
    assert config["novelty"]["max_identity"] == 0.9


@pytest.mark.parametrize(
    "bad",
    [
        {"drops": ["x.txt"]},
        {"drops": ["x.fasta"], "device": "gpu"},
        {"drops": ["x.fasta"], "min_ptm": 70},
        {"drops": ["x.fasta"], "chunk_residue": 10},
    ],
)
def test_invalid_configs_are_refused(bad):
    with pytest.raises(WorkflowError):
        validate(bad, SCHEMA, set_default=True)


def test_named_drops_validate_and_keep_the_file_list_form():
    config = {"drops": ["a/drop1.fasta", {"name": "jan", "path": "2024_01/proteins.faa"}]}
    validate(config, SCHEMA, set_default=True)
    assert drop_entries(config["drops"]) == [("drop1", "a/drop1.fasta"), ("jan", "2024_01/proteins.faa")]


@pytest.mark.parametrize(
    "drop", [{"name": "a/b", "path": "x.fasta"}, {"name": "jan"}, {"name": "..", "path": "x.fasta"}]
)
def test_bad_named_drops_are_refused(drop):
    with pytest.raises(WorkflowError):
        validate({"drops": [drop]}, SCHEMA, set_default=True)


def test_two_drops_with_one_name_are_refused_with_the_remedy():
    with pytest.raises(PreflightError, match="give them names"):
        drop_entries(["2024_01/proteins.faa", "2024_02/proteins.faa"])


def test_prediction_sets_are_keyed_by_model_and_recycles(tmp_path):
    assert predictions_key("tiny", None) == "tiny"
    assert predictions_key("facebook/esmfold_v1", 3) == "facebook--esmfold_v1-r3"
    first, second = tmp_path / "a" / "esmfold", tmp_path / "b" / "esmfold"
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    keys = {predictions_key(str(first), None), predictions_key(str(second), None)}
    assert len(keys) == 2 and all(key.startswith("esmfold-") for key in keys)


def test_check_config_lists_every_problem_at_once(tmp_path):
    config = {"drops": [str(tmp_path / "missing.fasta")], "model": "no/such-model"}
    validate(config, SCHEMA, set_default=True)
    config.update(outdir=" ", min_length=900, max_length=100)
    with pytest.raises(PreflightError) as error:
        check_config(config, ROOT)
    message = str(error.value)
    for key in ("drops:", "outdir:", "max_length", "model:", "no/such-model"):
        assert key in message


@pytest.mark.parametrize("outdir", [".", "atlas", "workflow/out", "..", ""])
def test_outdirs_in_or_over_the_source_tree_are_refused(outdir, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert outdir_problems(outdir, ROOT)


def test_an_outdir_beside_the_sources_is_accepted(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    assert outdir_problems("results/demo", ROOT) == []
    assert outdir_problems(str(tmp_path / "run"), ROOT) == []


def test_the_catalog_test_config_validates():
    config = yaml.safe_load((ROOT / ".test" / "config" / "config.yaml").read_text())
    validate(config, SCHEMA, set_default=True)
    for _, path in drop_entries(config["drops"]):
        assert (ROOT / ".test" / path).is_file()


def test_the_catalog_test_config_plans_a_run():
    command = [sys.executable, "-m", "snakemake", "--directory", ".test", "--configfile"]
    command += [".test/config/config.yaml", "--cores", "1", "--dry-run"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "split_drop" in result.stdout + result.stderr
