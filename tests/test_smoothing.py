"""SmoothQuant for int8: the folded scales keep the fp32 function, and bring int8 closer to fp32."""

import copy

import pytest

torch = pytest.importorskip("torch")

from workers.engine.loading import SHIPPED_MODEL, load_engine_model  # noqa: E402
from workers.engine.precision import Precision, apply_precision  # noqa: E402
from workers.engine.smoothing import (  # noqa: E402
    ACTIVATION_PEAKS,
    SMOOTHED,
    load_peaks,
    record_peaks,
    save_peaks,
    smooth,
)

CPU = torch.device("cpu")
PROMPT = "text:\nEU rejects German call to boycott British lamb .\nentity type:\nORG\n"


def _logits(network, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(input_ids=ids).logits.float()


def _peaks_of(network, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    return record_peaks(network, lambda: _logits(network, ids))


def test_smoothing_keeps_the_fp32_function_and_flattens_the_inputs(base_engine_model):
    network = copy.deepcopy(base_engine_model.model)
    ids = torch.tensor([base_engine_model.encode(PROMPT)])
    reference = _logits(network, ids)
    peaks = _peaks_of(network, ids)
    assert len(peaks) == len(network.model.layers) * len(SMOOTHED)
    smooth(network, peaks, alpha=0.7)
    assert torch.allclose(_logits(network, ids), reference, atol=2e-3, rtol=1e-3)
    # the largest input channel of every smoothed linear layer is now much closer to the typical one
    after = _peaks_of(network, ids)
    spread = {name: float(p.max() / p.median()) for name, p in peaks.items()}
    flattened = {name: float(p.max() / p.median()) for name, p in after.items()}
    assert max(flattened.values()) < max(spread.values()) / 4


def test_calibration_needs_something_to_decode(base_engine_model):
    with pytest.raises(ValueError, match="calibration never reached"):
        record_peaks(base_engine_model.model, lambda: None)


@pytest.mark.skipif(not (SHIPPED_MODEL / ACTIVATION_PEAKS).exists(), reason="the shipped model has no activation peaks")
def test_smoothquant_brings_int8_closer_to_fp32_on_the_shipped_model(serving_engine_model):
    tokenizer = serving_engine_model.tokenizer
    texts = [
        "text:\nJapan began the defence of their Asian Cup title with a lucky 2-1 win against Syria .\nentity type:\n",
        "text:\nPeter Blackburn reports from Brussels on the European Commission 's ruling .\nentity type:\n",
    ]
    fp32 = serving_engine_model.model
    peaks = load_peaks(SHIPPED_MODEL / ACTIVATION_PEAKS)
    plain = apply_precision(copy.deepcopy(fp32), Precision.INT8, CPU)
    smoothed = apply_precision(copy.deepcopy(fp32), Precision.INT8, CPU, peaks)
    errors = {"plain": 0.0, "smoothed": 0.0}
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        reference = torch.log_softmax(_logits(fp32, ids), -1)
        for name, network in (("plain", plain), ("smoothed", smoothed)):
            errors[name] += float((torch.log_softmax(_logits(network, ids), -1) - reference).abs().mean())
    assert errors["smoothed"] < errors["plain"] * 0.75, errors


def test_int8_loads_smoothed_where_the_folder_ships_peaks(tiny_base_model, tmp_path, caplog):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "padellm.json").write_text('{"objective": "padellm", "schema": "conll03", "version": "0"}')
    model = load_engine_model(folder, base_model=tiny_base_model, dtype="int8")
    assert model.info["smoothing"] == "none" and "without SmoothQuant" in caplog.text
    fp32 = load_engine_model(folder, base_model=tiny_base_model, dtype="float32")
    ids = torch.tensor([fp32.encode(PROMPT)])
    save_peaks(folder / ACTIVATION_PEAKS, _peaks_of(fp32.model, ids), {"documents": 1})
    model = load_engine_model(folder, base_model=tiny_base_model, dtype="int8")
    assert model.info["smoothing"] == "smoothquant" and "DynamicQuantizedLinear" in repr(model.model)
    assert "smoothing" not in fp32.info
