"""Loading ESMFold: a Hugging Face hub id (local cache only), a local model directory, or `tiny`.

`tiny` is the real `EsmForProteinFolding` architecture at tiny sizes with seeded random weights, built in-
process and identical across runs and machines (same torch version): meaningless structures, for demos and
tests.

Precision: the ESM-2 language model (`model.esm`) runs in bf16 (fp16 where bf16 is unsupported) on GPU, the
folding trunk and structure module always in fp32 with TF32 matmuls (a full half-precision cast of ESMFold
gives NaN). On CPU everything runs in fp32 unless `lm_precision` asks otherwise.

Weights are read from safetensors files where present (a cached hub id uses the cached revision that has
them, e.g. refs/pr/4 of facebook/esmfold_v1), else from `pytorch_model.bin` through torch's restricted
unpickler (tensors only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

TINY = "tiny"
TINY_SEED = 0

# ESM-2 vocabulary (the order of the esm alphabet; esmfold_v1's config holds the same list).
ESM2_VOCAB = (
    "<cls>",
    "<pad>",
    "<eos>",
    "<unk>",
    "L",
    "A",
    "G",
    "V",
    "S",
    "E",
    "R",
    "T",
    "I",
    "D",
    "P",
    "K",
    "Q",
    "N",
    "F",
    "Y",
    "M",
    "H",
    "W",
    "C",
    "X",
    "B",
    "U",
    "Z",
    "O",
    ".",
    "-",
    "<null_1>",
    "<mask>",
)

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says how to fix it."""


@dataclass
class LoadedModel:
    model: torch.nn.Module  # EsmForProteinFolding, eval mode, no grad
    name: str  # provenance for the Parquet `model` column and the mmCIF: name@version
    device: torch.device
    lm_dtype: torch.dtype
    max_recycles: int  # the model's trunk passes when num_recycles is not given (recycles = this - 1)


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "tiny", "hub" or "dir"
    path: Path | None  # the directory holding config.json and the weights (None for tiny)
    name: str  # name@version


def tiny_config():
    """esmfold_v1's architecture (rotary ESM-2, token dropout, trunk, IPA structure module), tiny."""
    from transformers import EsmConfig

    return EsmConfig(
        vocab_size=len(ESM2_VOCAB),
        mask_token_id=ESM2_VOCAB.index("<mask>"),
        pad_token_id=ESM2_VOCAB.index("<pad>"),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=1026,
        layer_norm_eps=1e-5,
        position_embedding_type="rotary",
        emb_layer_norm_before=False,
        token_dropout=True,
        is_folding_model=True,
        vocab_list=list(ESM2_VOCAB),
        esmfold_config={
            "fp16_esm": False,
            "lddt_head_hid_dim": 16,
            "trunk": {
                "num_blocks": 1,
                "sequence_state_dim": 32,
                "pairwise_state_dim": 16,
                "sequence_head_width": 8,
                "pairwise_head_width": 8,
                "position_bins": 32,
                "dropout": 0.0,
                "max_recycles": 4,
                "chunk_size": None,
                "structure_module": {
                    "sequence_dim": 32,
                    "pairwise_dim": 16,
                    "ipa_dim": 8,
                    "resnet_dim": 16,
                    "num_heads_ipa": 2,
                    "num_qk_points": 2,
                    "num_v_points": 2,
                    "dropout_rate": 0.0,
                    "num_blocks": 2,
                    "num_transition_layers": 1,
                    "num_resnet_blocks": 1,
                },
            },
        },
    )


def full_size_config(lm_layers: int = 36, lm_hidden: int = 2560, lm_heads: int = 40):
    """esmfold_v1's dimensions (ESM-2 3B: 36 layers x 2560; trunk 48 blocks, 1024/128), for timing with
    random weights. A smaller LM (`lm_layers`, `lm_hidden`) keeps the memory down on small GPUs."""
    config = tiny_config()
    config.hidden_size = lm_hidden
    config.num_hidden_layers = lm_layers
    config.num_attention_heads = lm_heads
    config.intermediate_size = 4 * lm_hidden
    trunk = config.esmfold_config.trunk
    trunk.num_blocks = 48
    trunk.sequence_state_dim = 1024
    trunk.pairwise_state_dim = 128
    trunk.sequence_head_width = 32
    trunk.pairwise_head_width = 32
    sm = trunk.structure_module
    sm.sequence_dim, sm.pairwise_dim, sm.ipa_dim, sm.resnet_dim = 384, 128, 16, 128
    sm.num_heads_ipa, sm.num_qk_points, sm.num_v_points, sm.num_blocks = 12, 4, 8, 8
    sm.num_resnet_blocks = 2
    config.esmfold_config.lddt_head_hid_dim = 128
    return config


def build_random_model(config, seed: int = TINY_SEED) -> torch.nn.Module:
    """EsmForProteinFolding from `config` with weights drawn from a private seeded RNG stream.

    transformers initialises many of ESMFold's output layers to zero (openfold's "final" init), which would
    make every structure and confidence identical; all parameters are redrawn here (fan-in scaled normal), so
    outputs depend on the sequence. The global RNG state is left as it was.
    """
    from transformers import EsmForProteinFolding

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EsmForProteinFolding(config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in sorted(model.named_parameters()):
                if param.ndim >= 2:
                    std = 1.0 / max(param.shape[-1], 1) ** 0.5
                    param.copy_(torch.randn(param.shape, generator=generator) * std)
                elif name.endswith("weight"):  # layer norms
                    param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
                else:
                    param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def _has_safetensors(snapshot: Path) -> bool:
    return any(snapshot.glob("*.safetensors")) or (snapshot / "model.safetensors.index.json").exists()


def _cached_revisions(repo_id: str) -> list[str]:
    """The revisions of `repo_id` in the local cache (`main` first), e.g. main and refs/pr/4."""
    import huggingface_hub.constants

    refs = Path(huggingface_hub.constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs"
    cached = sorted(path.relative_to(refs).as_posix() for path in refs.rglob("*") if path.is_file())
    return ["main", *(revision for revision in cached if revision != "main")]


def _hub_snapshot(repo_id: str) -> Path:
    """The cached snapshot of a hub id: one with safetensors weights when any cached revision has them
    (esmfold_v1's main branch has only pytorch_model.bin; its refs/pr/4 adds model.safetensors), else main."""
    from huggingface_hub import snapshot_download

    snapshots, failure = [], None
    for revision in _cached_revisions(repo_id):
        try:
            snapshots.append(Path(snapshot_download(repo_id, revision=revision, local_files_only=True)))
        except Exception as error:  # LocalEntryNotFoundError, OfflineModeIsEnabled, ...
            failure = failure or error
    for snapshot in snapshots:
        if _has_safetensors(snapshot):
            return snapshot
    if snapshots:
        return snapshots[0]
    raise ModelLoadError(
        f"model {repo_id!r} is not in the local Hugging Face cache ({type(failure).__name__}: {failure}).\n"
        f"Fetch it once on a machine with network access:  hf download {repo_id}\n"
        f"(safetensors weights, read without unpickling: hf download {repo_id} --revision refs/pr/4;"
        " either is found in the cache),\n"
        "with the same HF_HOME as the fold jobs (copy the cache over if the GPU nodes are offline),\n"
        "or set `model` to a local directory holding config.json and model.safetensors"
        " (or pytorch_model.bin)."
    )


def _dir_version(path: Path) -> str:
    """A cheap fingerprint of a model directory: config.json and the weight files' names and sizes."""
    match = re.search(r"snapshots/([0-9a-f]{40})/?$", str(path))
    if match:
        return match.group(1)
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors*")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return "sha256:" + digest.hexdigest()[:16]


def resolve_model(model: str) -> ModelSource:
    """Where `model` lives and its provenance name, without loading weights."""
    if model == TINY:
        return ModelSource("tiny", None, f"tiny-seed{TINY_SEED}")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"model directory {str(path)!r} has no config.json")
        return ModelSource("dir", path.resolve(), f"{path.resolve().name}@{_dir_version(path.resolve())}")
    if model.count("/") == 1 and not model.startswith((".", "/")) and not path.exists():
        snapshot = _hub_snapshot(model)
        return ModelSource("hub", snapshot, f"{model}@{snapshot.name}")
    raise ModelLoadError(f"model {model!r} is neither 'tiny', a model directory nor a Hugging Face hub id")


def source_max_recycles(source: ModelSource) -> int:
    """The model's `max_recycles` (trunk passes when no num_recycles is given), read from config.json."""
    if source.kind == "tiny":
        return int(tiny_config().esmfold_config.trunk.max_recycles)
    config = json.loads((source.path / "config.json").read_text())
    trunk = (config.get("esmfold_config") or {}).get("trunk") or {}
    return int(trunk.get("max_recycles", 4))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if re.fullmatch(r"cuda(:\d+)?", device):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {device!r} asked for, but torch sees no CUDA GPU")
        resolved = torch.device(device)
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ModelLoadError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return resolved
    raise ModelLoadError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")


def resolve_lm_dtype(lm_precision: str, device: torch.device) -> torch.dtype:
    if lm_precision not in PRECISIONS:
        raise ModelLoadError(f"lm_precision must be one of {', '.join(PRECISIONS)}, not {lm_precision!r}")
    if lm_precision != "auto":
        return _DTYPES[lm_precision]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _load_pretrained(path: Path) -> torch.nn.Module:
    """ESMFold weights from safetensors, or else from pytorch_model.bin through torch's restricted unpickler
    (`weights_only`: tensors and plain containers only, so a hostile file cannot run code). The hub's
    facebook/esmfold_v1 main branch ships only pytorch_model.bin."""
    from transformers import EsmForProteinFolding

    sharded = (path / "model.safetensors.index.json").exists()
    has_safetensors = sharded or bool(list(path.glob("*.safetensors")))
    if not has_safetensors:
        if not list(path.glob("pytorch_model*.bin")):
            raise ModelLoadError(f"{path} holds no model weights (model.safetensors or pytorch_model.bin)")
        log.warning(
            "%s has no safetensors weights: reading pytorch_model.bin with torch's restricted unpickler"
            " (weights_only: tensors only, no code)",
            path,
        )
    try:
        return EsmForProteinFolding.from_pretrained(
            str(path),
            local_files_only=True,
            use_safetensors=has_safetensors,
            weights_only=True,
            dtype=torch.float32,
        )
    except Exception as error:
        raise ModelLoadError(
            f"could not load ESMFold from {path}: {type(error).__name__}: {error}"
        ) from error


def prepare_model(model: torch.nn.Module, device: torch.device, lm_dtype: torch.dtype) -> torch.nn.Module:
    """Trunk in fp32, language model in `lm_dtype`, eval mode, no gradients, on `device`."""
    model.eval()
    model.requires_grad_(False)
    model.float()
    model.esm.to(lm_dtype)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return model


def load_model(model: str, device: str | torch.device = "auto", lm_precision: str = "auto") -> LoadedModel:
    source = resolve_model(model)
    device = resolve_device(device)
    lm_dtype = resolve_lm_dtype(lm_precision, device)
    if device.type == "cpu" and lm_dtype == torch.float16:
        log.warning("fp16 language model on CPU is slow and poorly supported; consider --lm-precision fp32")
    network = build_random_model(tiny_config()) if source.kind == "tiny" else _load_pretrained(source.path)
    network = prepare_model(network, device, lm_dtype)
    max_recycles = int(network.config.esmfold_config.trunk.max_recycles)
    return LoadedModel(network, source.name, device, lm_dtype, max_recycles)


def model_summary(loaded: LoadedModel) -> str:
    n_params = sum(p.numel() for p in loaded.model.parameters())
    device = str(loaded.device)
    if loaded.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(loaded.device)})"
    return json.dumps(
        {
            "model": loaded.name,
            "device": device,
            "lm_dtype": str(loaded.lm_dtype).removeprefix("torch."),
            "parameters": n_params,
            "threads": torch.get_num_threads(),
            "pid": os.getpid(),
        }
    )
