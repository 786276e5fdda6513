"""config.yaml and the demo config validate against the schema, which fills docs/SPEC.md's defaults."""

from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from atlas.novelty import DEFAULT_SENSITIVITY

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
    assert config["novelty"]["sensitivity"] == DEFAULT_SENSITIVITY  # the CLI's default is the schema's


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
