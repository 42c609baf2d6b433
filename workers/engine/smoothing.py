"""SmoothQuant (Xiao et al., 2023) for the int8 precision: activation outliers moved into the weights.

torch's dynamic int8 linear layers quantize a layer's input with one scale per forward (the largest |x| of the
whole input), so the few channels that carry activations a hundred times larger than the rest leave the others a
handful of int8 steps. SmoothQuant divides every input channel j by s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)
and multiplies the weights' column j by it: X W^T = (X / s)(W s)^T, the same product, flatter inputs. The 1/s
is folded into the operation before the layer, so inference does no extra work:

- q, k, v projections: the input RMSNorm's weight; gate and up projections: the post-attention RMSNorm's;
- down projection (input silu(gate) * up): the up projection's output rows;
- output projection (input: attention over v): v's output rows, one scale per v channel, shared by the query
  heads that read it (grouped-query attention).

The peaks max|X_j| are measured once per model by `padellm-ner calibrate` on training documents and shipped in
the model folder (`activation_peaks.safetensors`); `alpha` trades activation range for weight range. In fp32 the
smoothed network computes what the original does (up to rounding); only int8 sees the difference.

Written here rather than taken from torchao, whose SmoothQuant swaps in its own linear layers with kernels for
torch.compile; folding the scales keeps torch's eager x86/fbgemm int8 layers (workers.engine.precision).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ACTIVATION_PEAKS = "activation_peaks.safetensors"
DEFAULT_ALPHA = 0.7  # experiments/int8-accuracy: the F1 of fp32 on held-out dev sentences, int8's speed
SMOOTHED = ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")  # one input per group
_FLOOR = 1e-5  # dead channels (peak 0) keep a finite scale


def _layers(network: torch.nn.Module) -> list[Any]:
    """The decoder layers of a Llama-shaped causal LM (SmolLM2, Llama, Mistral, Qwen2)."""
    layers = getattr(getattr(network, "model", None), "layers", None)
    if layers is None or not all(
        hasattr(layer, "input_layernorm") and hasattr(getattr(layer, "mlp", None), "up_proj") for layer in layers
    ):
        raise ValueError(f"SmoothQuant folds into Llama-shaped decoder layers; {type(network).__name__} is not one")
    return list(layers)


@torch.inference_mode()
def record_peaks(network: torch.nn.Module, run: Callable[[], object]) -> dict[str, torch.Tensor]:
    """Per decoder layer and smoothed input, the largest |activation| of each channel while `run()` decodes."""
    layers = _layers(network)
    peaks: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, inputs, _output) -> None:
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1]).abs().amax(0)
            peaks[name] = torch.maximum(peaks[name], x) if name in peaks else x

        return hook

    handles = [
        layer.get_submodule(linear).register_forward_hook(keep(f"model.layers.{i}.{linear}"))
        for i, layer in enumerate(layers)
        for linear in SMOOTHED
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    missing = [f"model.layers.{i}.{linear}" for i in range(len(layers)) for linear in SMOOTHED]
    missing = [name for name in missing if name not in peaks]
    if missing:
        raise ValueError(f"calibration never reached {missing[0]} (and {len(missing) - 1} more): no documents?")
    return peaks


def save_peaks(path: Path, peaks: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    from safetensors.torch import save_file

    save_file(
        {name: peak.float().contiguous() for name, peak in sorted(peaks.items())},
        str(path),
        metadata={key: json.dumps(value) for key, value in metadata.items()},
    )


def load_peaks(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _scales(peak: torch.Tensor, linears: list[torch.nn.Linear], alpha: float) -> torch.Tensor:
    weight_peak = torch.stack([linear.weight.abs().amax(0) for linear in linears]).amax(0).float()
    scale = peak.clamp(min=_FLOOR) ** alpha / weight_peak.clamp(min=_FLOOR) ** (1 - alpha)
    return scale.clamp(min=_FLOOR)


def _divide_outputs(linear: torch.nn.Linear, scale: torch.Tensor) -> None:
    linear.weight.div_(scale[:, None])
    if linear.bias is not None:  # Qwen2's v projection has one
        linear.bias.div_(scale)


@torch.no_grad()
def smooth(network: torch.nn.Module, peaks: dict[str, torch.Tensor], alpha: float = DEFAULT_ALPHA) -> None:
    """Fold SmoothQuant's scales into `network` (fp32, in place): same function, flatter linear inputs."""
    layers = _layers(network)
    config: Any = network.config
    kv_heads = config.num_key_value_heads
    group = config.num_attention_heads // kv_heads
    for i, layer in enumerate(layers):
        peak = {linear: peaks[f"model.layers.{i}.{linear}"].to(layer.input_layernorm.weight) for linear in SMOOTHED}
        attention, mlp = layer.self_attn, layer.mlp

        qkv = [attention.q_proj, attention.k_proj, attention.v_proj]
        s = _scales(peak["self_attn.q_proj"], qkv, alpha)
        layer.input_layernorm.weight.div_(s)
        for linear in qkv:
            linear.weight.mul_(s)

        s = _scales(peak["mlp.gate_proj"], [mlp.gate_proj, mlp.up_proj], alpha)
        layer.post_attention_layernorm.weight.div_(s)
        for linear in (mlp.gate_proj, mlp.up_proj):
            linear.weight.mul_(s)

        s = _scales(peak["mlp.down_proj"], [mlp.down_proj], alpha)
        _divide_outputs(mlp.up_proj, s)
        mlp.down_proj.weight.mul_(s)

        s = _scales(peak["self_attn.o_proj"], [attention.o_proj], alpha)  # one per query-head channel
        per_v = s.view(kv_heads, group, -1).amax(1)  # the query heads of a group read the same v channel
        _divide_outputs(attention.v_proj, per_v.reshape(-1))
        attention.o_proj.weight.mul_(per_v[:, None, :].expand(-1, group, -1).reshape(-1))
