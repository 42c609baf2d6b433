"""The engine in bf16, on any CPU: native where the CPU has AVX512-BF16 or AMX (where `auto` picks it), emulated by
torch elsewhere. bf16 keeps 8 bits of mantissa, so a log-probability moves by a few hundredths and a near tie may
go either way; a confident greedy choice may not. Checked against fp32 and against itself in other batch shapes."""

import pytest
import torch

from padellm_ner.core import get_schema, template_for
from workers.engine.decoder import decode_tree, encode_prefix, greedy_decode
from workers.engine.padellm import PadellmEngine

pytestmark = pytest.mark.precision("bfloat16")

TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C match .",
    "Lena Okafor of Siemens flew to Munich on Tuesday to meet Deutsche Bahn in Berlin .",
]
CONFIDENT = 0.9  # a greedy choice at least this probable in fp32 must stay the same in bf16
LOGPROB_TOLERANCE = 0.08  # bf16 against fp32, per sequence (a few tokens)


def prompts(model, text):
    template, schema = template_for("en"), get_schema("conll03")
    prefix = model.encode(template.shared_prefix(text), special=True)
    branches = [model.encode(template.label_branch(label)) for label in schema.labels]
    branches += [model.encode(template.label_branch(label) + template.mention_suffix(1, 1)) for label in schema.labels]
    return prefix, branches


def stops(model):
    return frozenset({model.eos_id, *model.newline_ids})


def confident(generated) -> bool:
    return all(lp >= torch.log(torch.tensor(CONFIDENT)).item() for lp in generated.logprobs)


def test_bf16_weights_and_report(serving_engine_model_bf16):
    model = serving_engine_model_bf16
    assert model.info["dtype"] == "bfloat16"
    assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("text", TEXTS)
def test_bf16_keeps_fp32s_confident_choices(serving_engine_model, serving_engine_model_bf16, text):
    """Every count and first-mention sequence: where fp32 chose each token with probability >= 0.9, bf16 chooses the
    same tokens, with log-probabilities within LOGPROB_TOLERANCE."""
    fp32, bf16 = serving_engine_model, serving_engine_model_bf16
    prefix, branches = prompts(fp32, text)
    reference = greedy_decode(
        fp32.model, [prefix + b for b in branches], stop_ids=stops(fp32), max_new_tokens=8, pad_id=fp32.pad_id
    )
    got = greedy_decode(
        bf16.model, [prefix + b for b in branches], stop_ids=stops(bf16), max_new_tokens=8, pad_id=bf16.pad_id
    )
    checked = 0
    for a, b in zip(reference, got):
        if confident(a):
            checked += 1
            assert b.token_ids == a.token_ids
            assert b.logprob == pytest.approx(a.logprob, abs=LOGPROB_TOLERANCE)
    assert checked >= len(branches) // 2, "most of the sequences are confident: the check compares something"


def test_bf16_prefix_sharing_decodes_as_each_prompt_alone(serving_engine_model_bf16):
    """The tree (a prefix read once, its branches after it) and a known prefix cache give, in bf16, what each
    prompt decoded alone gives: the same confident tokens, log-probabilities within bf16's rounding."""
    m = serving_engine_model_bf16
    prefix, branches = prompts(m, TEXTS[1])
    alone = greedy_decode(m.model, [prefix + b for b in branches], stop_ids=stops(m), max_new_tokens=8, pad_id=m.pad_id)
    tree, _ = decode_tree(m.model, prefix, branches, stop_ids=stops(m), max_new_tokens=8)
    on_cache = greedy_decode(
        m.model,
        branches,
        prefix_ids=prefix,
        prefix_cache=encode_prefix(m.model, prefix, m.device),
        stop_ids=stops(m),
        max_new_tokens=8,
        pad_id=m.pad_id,
    )
    for got in (tree, on_cache):
        for a, b in zip(alone, got):
            if confident(a):
                assert b.token_ids == a.token_ids
                assert b.logprob == pytest.approx(a.logprob, abs=LOGPROB_TOLERANCE / 2)


def test_bf16_records_match_fp32_on_clear_sentences(serving_engine_model, serving_engine_model_bf16):
    """Whole recognitions: the entities of the shipped model on these sentences are the same in both precisions."""
    if not serving_engine_model.info.get("schema"):
        pytest.skip("the bare base model finds no entities to compare")
    schema = get_schema("conll03")

    def entities(model, text):
        return sorted((m.label, m.text) for m in PadellmEngine(model).recognize(text, schema).prediction.mentions)

    for text in TEXTS:
        fp32 = entities(serving_engine_model, text)
        assert fp32, "the sentence holds entities"
        assert entities(serving_engine_model_bf16, text) == fp32
