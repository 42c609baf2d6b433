"""The shipped model: present, within its size budget, loadable, and it recognizes entities."""

import json
import re

import pytest

from padellm_ner.core import get_schema
from workers.engine.loading import SHIPPED_MODEL

CARD_SECTIONS = (
    "Model details",
    "Intended use",
    "Training data",
    "Training procedure",
    "Evaluation",
    "Limitations",
    "How to reproduce",
)


def test_shipped_model_is_small_and_described():
    info = json.loads((SHIPPED_MODEL / "padellm.json").read_text())
    assert info["objective"] == "padellm" and info["schema"] == "conll03"
    assert (SHIPPED_MODEL / "delta_lowrank.safetensors").stat().st_size <= 25_000_000
    # the int8 calibration (workers/engine/smoothing.py): statistics, not weights, and small beside them
    assert (SHIPPED_MODEL / "activation_peaks.safetensors").stat().st_size <= 500_000


@pytest.mark.parametrize("model", ["padellm-conll03", "autoreg-struct-conll03"])
def test_model_folders_hold_weights_metadata_and_a_standard_card(model):
    folder = SHIPPED_MODEL.parent / model
    assert {p.name for p in folder.iterdir()} == {
        "delta_lowrank.safetensors",
        "activation_peaks.safetensors",
        "padellm.json",
        "README.md",
    }
    card = (folder / "README.md").read_text()
    assert card.startswith(f"# Model card: {model}\n")
    assert re.findall(r"^## (.+)$", card, re.M) == list(CARD_SECTIONS)
    assert not re.search(r"\b[Ss]top [0-9]+", card), "a model card describes the model, not the project's history"


def test_shipped_model_recognizes_entities(serving_engine_model):
    from workers.engine.padellm import PadellmEngine

    assert serving_engine_model.info["name"] == "padellm-conll03"
    schema = get_schema("conll03")
    engine = PadellmEngine(serving_engine_model)
    result = engine.recognize("EU rejects German call to boycott British lamb .", schema)
    assert {(m.label, m.text, m.start) for m in result.prediction.mentions} == {
        ("ORG", "EU", 0),
        ("MISC", "German", 11),
        ("MISC", "British", 34),
    }
    result = engine.recognize("Peter Blackburn", schema)
    assert [(m.label, m.text) for m in result.prediction.mentions] == [("PER", "Peter Blackburn")]
    assert all(0 < m.probability <= 1 for m in result.prediction.mentions)
