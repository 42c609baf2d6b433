"""Loading a model for the embedded engine: a base causal LM, optionally with a PaDeLLM adapter merged in.

A PaDeLLM model folder holds `padellm.json` (what it is: objective, schema, base model, version) and a PEFT
LoRA adapter (`adapter_config.json`, `adapter_model.safetensors`). The adapter is merged into the base
weights at load time, so decoding runs a plain model. On a GPU the model runs in bf16; on the CPU in fp32.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import torch

from padellm_ner import config
from workers.base_model import ensure_base_model

from .lookup import lookup_keys
from .memory import keep_freed_memory
from .precision import Precision, apply_precision, pick_precision
from .smoothing import ACTIVATION_PEAKS, load_peaks
from .weights import LOWRANK_DELTA, apply_quantized_lowrank

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

SHIPPED_MODEL = config.REPO_ROOT / "models" / "padellm-conll03"


class ModelInfo(TypedDict, total=False):
    """A model folder's `padellm.json` as the engine reads it, with what loading adds (name, base model, dtype).
    `padellm.json` holds more (the export form, the training settings); those stay in the file."""

    name: str  # the model folder's name, or the base model's for a bare base model
    base_model: str
    dtype: str  # the weights' torch dtype, e.g. "float32"
    objective: str  # "padellm" or "autoreg-struct"
    schema: str  # the label schema it was trained for
    version: str
    format: str  # how the weights are stored, e.g. "lowrank-int4-g64-r152-energy"
    smoothing: str  # int8 only: "smoothquant" (the folder's activation peaks folded in) or "none"


@dataclass
class EngineModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    info: ModelInfo = field(default_factory=lambda: ModelInfo())
    newline_ids: frozenset[int] = frozenset()
    lookup_keys: list[int] = field(default_factory=list)  # workers.engine.lookup: token -> spelling key

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_id

    @property
    def attention_window(self) -> int | None:
        """How far back the model's local-attention layers see (Gemma 3's sliding window), None where every layer
        sees the whole sequence. The engine's masks do not apply it: prompts must stay inside it."""
        config = self.model.config
        window = getattr(config, "sliding_window", None)
        return int(window) if window and "sliding_attention" in (getattr(config, "layer_types", None) or ()) else None

    def encode(self, text: str, special: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def token_texts(tokenizer, vocab_size: int) -> list[str]:
    """The text of every token id the model can emit (ids the tokenizer lacks spell nothing)."""
    known = len(tokenizer)
    return tokenizer.batch_decode([[i] for i in range(min(known, vocab_size))]) + [""] * max(0, vocab_size - known)


def newline_token_ids(texts: list[str]) -> frozenset[int]:
    """Every token whose text holds a newline: the count step (and a mention) ends at one of them."""
    return frozenset(i for i, text in enumerate(texts) if "\n" in text)


def resolve_model_dir(model: str | Path | None) -> Path | None:
    """The PaDeLLM model to load: the one named, else PADELLM_MODEL, else the shipped one (if present)."""
    if model:
        return Path(model).expanduser()
    if config.model_override():
        return config.model_override()
    return SHIPPED_MODEL if (SHIPPED_MODEL / "padellm.json").exists() else None


def _with_folder_weights(network, model_dir: Path):
    """The base network with a model folder's weights: its low-rank deltas added, or its LoRA adapter merged."""
    if (model_dir / LOWRANK_DELTA).exists():
        apply_quantized_lowrank(network, model_dir / LOWRANK_DELTA)
    elif (model_dir / "adapter_config.json").exists():
        from peft import PeftModel

        network = PeftModel.from_pretrained(network, model_dir).merge_and_unload()
    return network


def _int8_peaks(model_dir: Path | None) -> dict[str, torch.Tensor] | None:
    """The model folder's activation peaks for SmoothQuant, if it ships them."""
    path = model_dir / ACTIVATION_PEAKS if model_dir is not None else None
    if path is not None and path.exists():
        return load_peaks(path)
    log.warning(
        "int8 without SmoothQuant: %s has no %s (run `padellm-ner calibrate`); expect several F1 points below fp32",
        model_dir or "the base model",
        ACTIVATION_PEAKS,
    )
    return None


def load_engine_model(
    model: str | Path | None = None,
    *,
    base_model: str | Path | None = None,
    device: str | None = None,
    adapter: bool = True,
    dtype: str | None = None,
) -> EngineModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = pick_device(device)
    if target.type == "cpu":
        keep_freed_memory()  # forwards reuse the memory of the last one instead of faulting in fresh pages
    precision = pick_precision(dtype, target)
    model_dir = resolve_model_dir(model) if adapter else None
    info: dict[str, Any] = {}
    run_weights = None
    if model_dir is not None and (model_dir / "train_config.json").exists():
        # a training run folder (full fine-tuning): its unextracted weights, to measure what export loses
        run_config = json.loads((model_dir / "train_config.json").read_text())
        run_weights = model_dir / "final.safetensors"
        if not run_weights.exists():
            run_weights = model_dir / "checkpoint" / "trainable.safetensors"
        info = {
            "objective": run_config["objective"],
            "schema": run_config["schema"],
            "version": "run",
            "format": f"{run_config['method']}-run-weights",
        }
        base_model = base_model or run_config["base_model"]
    elif model_dir is not None:
        info = json.loads((model_dir / "padellm.json").read_text())
        if (model_dir / "config.json").exists():  # a merged folder (`model serve-folder`): the whole network
            base_model = model_dir
    base = ensure_base_model(base_model, info.get("base_model_name"))
    tokenizer = AutoTokenizer.from_pretrained(base)
    network: PreTrainedModel = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, attn_implementation="sdpa"
    )
    if run_weights is not None:
        from safetensors.torch import load_file

        weights = load_file(run_weights)
        if any("lora_" in name for name in weights):
            raise ValueError(f"{model_dir} is a LoRA run: export it first (padellm-ner export)")
        missing = set(weights) - set(network.state_dict())
        if missing:
            raise ValueError(f"{run_weights} does not fit the base model: {sorted(missing)[:3]}")
        network.load_state_dict(weights, strict=False)
    elif model_dir is not None and model_dir != Path(base):
        network = _with_folder_weights(network, model_dir)
    peaks = _int8_peaks(model_dir) if precision is Precision.INT8 else None
    network = cast("PreTrainedModel", apply_precision(network, precision, target, peaks))
    network.eval()
    model_info = ModelInfo(name=model_dir.name if model_dir else Path(base).name, base_model=str(base))
    model_info.update(cast(ModelInfo, {key: info[key] for key in ModelInfo.__annotations__ if key in info}))
    model_info["dtype"] = precision.value
    if precision is Precision.INT8:
        model_info["smoothing"] = "smoothquant" if peaks is not None else "none"
    vocabulary = int(network.config.vocab_size)  # the input embedding's rows; lm_head may be quantized
    texts = token_texts(tokenizer, vocabulary)
    return EngineModel(network, tokenizer, target, model_info, newline_token_ids(texts), lookup_keys(texts))
