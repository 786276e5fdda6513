"""Model loading: the seeded tiny model, the Hugging Face cache (offline), model directories, devices."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from atlas.fold import fold_main
from atlas.model import (
    ModelLoadError,
    build_random_model,
    load_model,
    resolve_device,
    resolve_lm_dtype,
    resolve_model,
    tiny_config,
)

DATA = Path(__file__).resolve().parent / "data"  # as tests/conftest.py's TEST_DATA
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", "cpu", "auto")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_tiny_is_identical_across_loads_and_leaves_the_global_rng_alone(tiny):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    again = load_model("tiny", "cpu", "auto")
    assert torch.equal(torch.get_rng_state(), state)
    first, second = tiny.model.state_dict(), again.model.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert tiny.name == again.name == "tiny-seed0"
    assert tiny.max_recycles == 4 and tiny.lm_dtype == torch.float32
    assert not tiny.model.training and not any(p.requires_grad for p in tiny.model.parameters())
    assert next(tiny.model.esm.parameters()).dtype == torch.float32


def test_tiny_is_the_esmfold_architecture(tiny):
    from transformers import EsmForProteinFolding

    config = tiny.model.config
    assert isinstance(tiny.model, EsmForProteinFolding)
    assert config.vocab_list[4:8] == ["L", "A", "G", "V"] and config.vocab_list[-1] == "<mask>"
    assert config.esmfold_config.fp16_esm is False
    assert config.position_embedding_type == "rotary" and config.num_hidden_layers == 2
    assert config.esmfold_config.trunk.num_blocks == 1


def _save(model, directory: Path) -> Path:
    model.save_pretrained(directory)
    assert (directory / "model.safetensors").exists()
    return directory


def test_hub_id_from_the_local_cache(hf_cache, tiny):
    snapshot = hf_cache / "models--facebook--esmfold_v1" / "snapshots" / COMMIT
    _save(build_random_model(tiny_config()), snapshot)
    (hf_cache / "models--facebook--esmfold_v1" / "refs").mkdir()
    (hf_cache / "models--facebook--esmfold_v1" / "refs" / "main").write_text(COMMIT)
    loaded = load_model("facebook/esmfold_v1", "cpu", "fp32")
    assert loaded.name == f"facebook/esmfold_v1@{COMMIT}"
    weights, reference = loaded.model.state_dict(), tiny.model.state_dict()
    assert all(torch.equal(weights[k], reference[k]) for k in reference)
    # the snapshot directory itself is a model directory with the same version
    assert resolve_model(str(snapshot)).name == f"{COMMIT}@{COMMIT}"


def test_hub_id_not_cached_says_how_to_fetch_it(hf_cache, tmp_path, capsys):
    with pytest.raises(ModelLoadError, match="hf download facebook/esmfold_v1") as error:
        load_model("facebook/esmfold_v1", "cpu")
    assert "--revision refs/pr/4" in str(error.value) and "huggingface-cli" not in str(error.value)
    fasta = tmp_path / "c.fasta"
    fasta.write_text(">a\nMKTVRQERLK\n")
    argv = ["--fasta", str(fasta), "--output", str(tmp_path / "c.parquet"), "--drop", "d", "--chunk", "c"]
    assert fold_main([*argv, "--model", "facebook/esmfold_v1", "--device", "cpu"]) == 1
    assert not (tmp_path / "c.parquet").exists()


def _cached_revision(cache: Path, revision: str, commit: str, weights: str) -> Path:
    """A hub cache entry as `hf download facebook/esmfold_v1 [--revision R]` leaves it."""
    repo = cache / "models--facebook--esmfold_v1"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot / weights).write_bytes(b"weights")
    ref = repo / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot


def test_hub_id_prefers_a_cached_revision_with_safetensors(hf_cache):
    main = "a" * 40
    _cached_revision(hf_cache, "main", main, "pytorch_model.bin")
    assert resolve_model("facebook/esmfold_v1").path.name == main  # only main: its pickled weights
    pr4 = "b" * 40
    _cached_revision(hf_cache, "refs/pr/4", pr4, "model.safetensors")
    source = resolve_model("facebook/esmfold_v1")  # the default `model:` finds refs/pr/4's safetensors
    assert source.path.name == pr4 and source.name == f"facebook/esmfold_v1@{pr4}"


def test_hub_id_with_only_the_safetensors_revision(hf_cache):
    pr4 = "c" * 40
    _cached_revision(hf_cache, "refs/pr/4", pr4, "model.safetensors")
    assert resolve_model("facebook/esmfold_v1").path.name == pr4


def test_model_directory(tmp_path, tiny):
    directory = _save(build_random_model(tiny_config()), tmp_path / "my_esmfold")
    loaded = load_model(str(directory), "cpu")
    assert loaded.name.startswith("my_esmfold@sha256:")
    assert loaded.name == resolve_model(str(directory)).name  # stable fingerprint
    weights, reference = loaded.model.state_dict(), tiny.model.state_dict()
    assert all(torch.equal(weights[k], reference[k]) for k in reference)


def test_pickled_weights_load_only_through_the_restricted_unpickler(tmp_path, tiny):
    directory = _save(build_random_model(tiny_config()), tmp_path / "pickled")
    (directory / "model.safetensors").unlink()
    torch.save(tiny.model.state_dict(), directory / "pytorch_model.bin")
    loaded = load_model(str(directory), "cpu")
    weights, reference = loaded.model.state_dict(), tiny.model.state_dict()
    assert all(torch.equal(weights[k], reference[k]) for k in reference)

    # a pickle that would run code when unpickled is refused, and its code never runs
    marker = tmp_path / "pwned"
    (directory / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCode(str(marker))))
    with pytest.raises(ModelLoadError):
        load_model(str(directory), "cpu")
    assert not marker.exists()


class _RunsCode:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_bad_directories_are_refused(tmp_path):
    no_weights = _save(build_random_model(tiny_config()), tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model weights"):
        load_model(str(no_weights), "cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(empty), "cpu")
    with pytest.raises(ModelLoadError):
        resolve_model("not/a/model/path")


def test_devices_and_precisions():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ModelLoadError):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA"):
            resolve_device("cuda:0")
    cpu = torch.device("cpu")
    assert resolve_lm_dtype("auto", cpu) == torch.float32
    assert resolve_lm_dtype("bf16", cpu) == torch.bfloat16
    assert resolve_lm_dtype("fp16", cpu) == torch.float16
    with pytest.raises(ModelLoadError):
        resolve_lm_dtype("int8", cpu)
