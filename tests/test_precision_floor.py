"""Engine precision chosen by what the hardware computes natively, and the latency floor the bench reports."""

import pytest
import torch

from padellm_ner.core import get_schema
from padellm_ner.core.aggregate import CountResult, MentionResult
from workers.engine import precision
from workers.engine.floor import latency_floor_s, longest_chain
from workers.engine.padellm import PadellmEngine
from workers.engine.precision import Precision, apply_precision, pick_precision

CPU, GPU = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(
    "asked, device, native, expected",
    [
        (None, CPU, False, Precision.FLOAT32),  # AVX2: bf16 is emulated, slower than fp32
        (None, CPU, True, Precision.BFLOAT16),  # AVX512-BF16 or AMX
        (None, GPU, False, Precision.BFLOAT16),
        ("float32", CPU, True, Precision.FLOAT32),
        ("bfloat16", CPU, False, Precision.BFLOAT16),
        ("int8", CPU, False, Precision.INT8),
    ],
)
def test_auto_precision_follows_native_bf16(monkeypatch, asked, device, native, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    monkeypatch.delenv("PADELLM_DTYPE", raising=False)
    assert pick_precision(asked, device) is expected


@pytest.mark.parametrize("value, expected", [("1", Precision.BFLOAT16), ("0", Precision.FLOAT32)])
def test_the_cpu_probe_can_be_overridden(monkeypatch, value, expected):
    """PADELLM_CPU_NATIVE_BF16 makes `auto` resolve as on the other kind of machine (a suite run as it would run
    there); unset, the probe decides."""
    monkeypatch.delenv("PADELLM_DTYPE", raising=False)
    monkeypatch.setenv("PADELLM_CPU_NATIVE_BF16", value)
    assert pick_precision(None, CPU) is expected
    monkeypatch.setenv("PADELLM_CPU_NATIVE_BF16", "yes")
    with pytest.raises(ValueError, match="expected 0 or 1"):
        pick_precision(None, CPU)


def test_bad_precisions_are_refused():
    with pytest.raises(ValueError, match="expected one of auto, float32, bfloat16, int8"):
        pick_precision("float16", CPU)
    with pytest.raises(ValueError, match="CPU precision"):
        pick_precision("int8", GPU)


def test_int8_quantizes_the_linear_layers_and_keeps_greedy_tokens_close():
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 32))
    x = torch.randn(16, 64)
    reference = network(x)
    quantized = apply_precision(network, Precision.INT8, CPU)
    assert "DynamicQuantizedLinear" in repr(quantized)
    out = quantized(x)
    assert (out.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9
    assert torch.allclose(out, reference, atol=0.1)


def test_the_longest_chain_is_a_count_and_its_longest_mention():
    counts = [
        CountResult("PER", "<num>2", generated_tokens=3, window=0),
        CountResult("LOC", "<num>0", generated_tokens=3, window=0),
        CountResult("ORG", "<num>1", generated_tokens=3, window=1),
    ]
    mentions = [
        MentionResult("PER", 1, "Peter", generated_tokens=2, window=0),
        MentionResult("PER", 2, "Werner Zwingmann", generated_tokens=6, window=0),
        MentionResult("ORG", 1, "European Union", generated_tokens=4, window=1),
    ]
    assert longest_chain(counts, mentions) == (0, "PER", 2, 3 + 6)
    assert longest_chain(counts[1:2], []) == (0, "LOC", None, 3)


def test_the_floor_is_below_the_engine_on_the_same_document(base_engine_model):
    schema = get_schema("conll03")
    engine = PadellmEngine(base_engine_model)
    text = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria ."
    engine.recognize(text, schema)  # warm-up
    result = engine.recognize(text, schema)
    windows = [w.text for w in engine.plan(text, schema).windows]
    floors = [latency_floor_s(engine, windows, schema, result.counts, result.mentions) for _ in range(3)]
    assert 0 < min(floors) < result.latency_s
