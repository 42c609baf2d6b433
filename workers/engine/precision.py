"""The precision the engine computes in, chosen by what the hardware computes natively.

- GPU: bf16.
- CPU with native bf16 matmuls (AVX512-BF16 or AMX): bf16; greedy outputs stay close to fp32 and a forward
  takes a fraction of the time.
- Other CPUs (AVX2): fp32, since bf16 is emulated there and slower than fp32.
- `int8` (asked for, CPU only): the linear layers dynamically quantized (int8 weights per output channel,
  activations quantized per forward) with torch's own x86/fbgemm kernels; embeddings and norms stay fp32. About
  twice as fast as fp32 on an AVX2 CPU. Where the model folder ships activation peaks (`padellm-ner calibrate`),
  SmoothQuant's scales are folded in first (workers.engine.smoothing), which keeps greedy outputs close to fp32;
  without them int8 loses several F1 points. `padellm-ner bench --precisions float32,int8` measures both on the
  same documents.
"""

from __future__ import annotations

import warnings
from enum import Enum

import torch

from padellm_ner import config

from .smoothing import smooth


class Precision(str, Enum):
    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    INT8 = "int8"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX); PADELLM_CPU_NATIVE_BF16 overrides it."""
    override = config.cpu_native_bf16_override()
    if override is not None:
        return override
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu; private, hence getattr
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def pick_precision(name: str | None, device: torch.device) -> Precision:
    """The named precision (flag or PADELLM_DTYPE); `auto`: bf16 on a GPU or a CPU with native bf16, else fp32."""
    try:
        precision = Precision(name or config.dtype_override() or "auto")
    except ValueError:
        choices = ", ".join(p.value for p in Precision)
        raise ValueError(f"unknown dtype {name!r}; expected one of {choices}") from None
    if precision is Precision.INT8 and device.type != "cpu":
        raise ValueError("--dtype int8 is a CPU precision (dynamic quantization); on a GPU use bfloat16")
    if precision is Precision.AUTO:
        native = device.type == "cuda" or cpu_has_native_bf16()
        return Precision.BFLOAT16 if native else Precision.FLOAT32
    return precision


def apply_precision(
    network: torch.nn.Module,
    precision: Precision,
    device: torch.device,
    peaks: dict[str, torch.Tensor] | None = None,
) -> torch.nn.Module:
    """The network on `device` in `precision` (int8: a dynamically quantized copy of its linear layers, smoothed
    first where the activation `peaks` of a calibration are given)."""
    if precision is Precision.INT8:
        network.to(device=device, dtype=torch.float32)
        if peaks is not None:
            smooth(network, peaks)
        with warnings.catch_warnings():
            # torch marks torch.ao.quantization as deprecated in favour of torchao (whose CPU int8 path wants
            # torch.compile); its eager x86/fbgemm kernels still ship and run here
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            # per output channel: on the shipped model per-tensor scales lost about 10 F1 points, per-channel 5
            return quantize_dynamic(network, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    dtype = torch.bfloat16 if precision is Precision.BFLOAT16 else torch.float32
    return network.to(device=device, dtype=dtype)
