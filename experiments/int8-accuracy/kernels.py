"""The int8 matmuls torch offers on this CPU, against fp32's: median time (ms, and x fp32) of one product of an activation
[M, K] and a weight [N, K] (the shipped model's MLP shapes) with 2 threads.

- fp32: x @ w.T (MKL);
- dynamic: torch's dynamic int8 linear layer (fbgemm; one activation scale per call), what `--dtype int8` runs;
- int_mm: torch._int_mm (int8 x int8 -> int32), the building block of a per-row activation scale;
- weight-only: torch._weight_int8pack_mm (int8 weights, fp32 activations).

    .venv/bin/python experiments/int8-accuracy/kernels.py
"""

import statistics
import time
import warnings

import torch

warnings.simplefilter("ignore")
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic  # noqa: E402

SHAPES = [(16, 576, 1536), (128, 576, 1536), (512, 576, 1536), (128, 1536, 576)]


def median_ms(fn, repeat: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def timings(m: int, k: int, n: int) -> dict[str, float]:
    x, w = torch.randn(m, k), torch.randn(n, k)
    linear = torch.nn.Linear(k, n, bias=False)
    linear.weight.data = w
    dynamic = quantize_dynamic(
        torch.nn.Sequential(linear), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
    )
    scale = w.abs().amax(1) / 127
    w8 = torch.round(w / scale[:, None]).to(torch.int8)
    w8_t = w8.t().contiguous()

    def int_mm():
        row_scale = x.abs().amax(1, keepdim=True) / 127  # a scale per row
        return torch._int_mm(torch.round(x / row_scale).to(torch.int8), w8_t).float() * row_scale * scale

    return {
        "fp32": median_ms(lambda: x @ w.T),
        "dynamic": median_ms(lambda: dynamic(x)),
        "int_mm": median_ms(int_mm),
        "weight-only": median_ms(lambda: torch._weight_int8pack_mm(x, w8, scale)),
    }


def main() -> None:
    torch.set_num_threads(2)
    print(f"{'M x K x N':<18}" + "".join(f"{name:>16}" for name in ("fp32", "dynamic", "int_mm", "weight-only")))
    for m, k, n in SHAPES:
        times = timings(m, k, n)
        cells = [f"{t:.2f} ({t / times['fp32']:.1f}x)" for t in times.values()]
        print(f"{f'{m} x {k} x {n}':<18}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
