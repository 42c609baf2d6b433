"""The weights format the engine reads: the quantised low-rank delta of a full fine-tune.

A full fine-tune ships as `delta_lowrank.safetensors`: for every trained projection W' of base weight W, the top
components of W' - W as U_r, S_r, V_r^T, with U_r and V_r^T quantised (int8 with one scale per rank component,
or int4, two per byte, with one scale per group of values) and S_r in fp32. The engine adds U_r S_r V_r^T to the
base weights. Training (`workers/training/export.py`) writes this format; this module defines it and reads it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

LOWRANK_DELTA = "delta_lowrank.safetensors"  # the quantised low-rank forms' one weights file
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # trained in a layer


def quantize(matrix: torch.Tensor, bits: int, group: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantisation of a [components, length] matrix (one rank component per row): one scale per row
    (group None) or per `group` consecutive values of a row. Returns the integer codes (int8, or int4 packed
    two per uint8 byte) and the scales, [components, groups]."""
    levels = 2 ** (bits - 1) - 1  # 127 or 7
    rows, length = matrix.shape
    group = min(group or length, length)
    padded = -(-length // group) * group  # a last, partial group is padded with zeros (trimmed on load)
    matrix = torch.nn.functional.pad(matrix, (0, padded - length))
    grouped = matrix.reshape(rows, padded // group, group)
    # scales are stored in fp16 (they are many for int4): the codes are computed with the stored value
    scale = (grouped.abs().amax(dim=2, keepdim=True) / levels).half().float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero (or fp16-tiny) group: codes 0
    codes = torch.round(grouped / scale).clamp(-levels, levels).to(torch.int8).reshape(rows, padded)
    if bits == 4:
        codes = torch.nn.functional.pad(codes, (0, padded % 2))  # an even count to pack in pairs
        nibbles = (codes + 8).to(torch.uint8)  # 1..15
        codes = nibbles[:, 0::2] | (nibbles[:, 1::2] << 4)
    return codes.contiguous(), scale.squeeze(2).float()


def dequantize(codes: torch.Tensor, scale: torch.Tensor, bits: int, group: int | None, length: int) -> torch.Tensor:
    """The [components, length] matrix back from `quantize`'s codes and scales."""
    if bits == 4:
        low, high = (codes & 0x0F).to(torch.int8) - 8, (codes >> 4).to(torch.int8) - 8
        codes = torch.stack([low, high], dim=2).reshape(codes.shape[0], -1)
    group = min(group or length, length)
    rows, groups = scale.shape
    values = codes[:, : groups * group].float().reshape(rows, groups, group) * scale[:, :, None]
    return values.reshape(rows, groups * group)[:, :length]


def lowrank_delta_targets(path: Path) -> set[str]:
    """The names of the weights a stored low-rank delta changes (its tensors are `{key}.u`, `{key}.s`, ... for the
    weight `{key}.weight`); reads the file's index only, no tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k.rsplit(".", 1)[0] + ".weight" for k in f.keys()}


def apply_quantized_lowrank(model: torch.nn.Module, path: Path) -> None:
    """Add the stored low-rank deltas to a model's weights (the inverse of `export_full_as_quantized_lowrank`)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    bits, group = int(metadata.get("bits", 8)), int(metadata.get("group", 0)) or None
    as_rows = metadata.get("layout") == "components-as-rows"  # older int8 files stored U as columns
    tensors = load_file(path)
    parameters = dict(model.named_parameters())
    keys = {k.rsplit(".", 1)[0] for k in tensors}
    with torch.no_grad():
        for key in keys:
            weight = parameters[f"{key}.weight"]
            if as_rows:
                u = dequantize(tensors[f"{key}.u"], tensors[f"{key}.u_scale"].float(), bits, group, weight.shape[0]).T
                vh = dequantize(tensors[f"{key}.vh"], tensors[f"{key}.vh_scale"].float(), bits, group, weight.shape[1])
            else:
                u = tensors[f"{key}.u"].float() * tensors[f"{key}.u_scale"][None, :]
                vh = tensors[f"{key}.vh"].float() * tensors[f"{key}.vh_scale"][:, None]
            weight.add_(((u * tensors[f"{key}.s"][None, :]) @ vh).to(weight.dtype))
