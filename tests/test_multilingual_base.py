"""The engine on the multilingual base (Gemma 3 270M: sliding-window and global attention layers, tied
embeddings, a 262k-token vocabulary) against plain per-sequence `generate`, on a Chinese prompt."""

import pytest
import torch
from test_engine import reference

from padellm_ner import config
from padellm_ner.core import get_schema, template_for
from workers.engine.decoder import decode_tree, encode_prefix, greedy_decode
from workers.engine.lookup import PromptLookup

pytestmark = pytest.mark.precision("float32")

TEXT = "吴重阳，中国国籍，大学本科，教授级高工，享受国务院特殊津贴，历任邮电部侯马电缆厂仪表试制组长。"


@pytest.fixture(scope="module")
def gemma_engine_model():
    from workers.base_model import GEMMA3
    from workers.engine.loading import load_engine_model

    if not (GEMMA3.folder / "model.safetensors").exists() and not config.base_model_override():
        pytest.skip(f"{GEMMA3.folder} is absent: run `padellm-ner model fetch --base-model gemma-3-270m`")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_engine_model(adapter=False, base_model="gemma-3-270m", device="cpu", dtype="float32")


def test_prefix_shared_decoding_on_gemma_equals_generate(gemma_engine_model):
    m = gemma_engine_model
    assert type(m.model).__name__ == "Gemma3ForCausalLM"
    template, schema = template_for("zh"), get_schema("resume")
    # eos only: the untrained base answers a newline first, and the tokens after it are what is compared
    stop = frozenset({m.eos_id})
    prefix = m.encode(template.shared_prefix(TEXT), special=True)
    branches = [m.encode(template.label_branch(schema.prompt_word(label))) for label in schema.labels]
    branches += [m.encode(template.label_branch("名称") + template.mention_suffix(2, k)) for k in (1, 2)]
    expected = [reference(m, prefix + branch, stop, 6) for branch in branches]
    assert all(len(tokens) == 6 for tokens, _ in expected)
    lookup = PromptLookup(prefix, m.lookup_keys, 3)
    variants = {
        "tree": decode_tree(m.model, prefix, branches, stop_ids=stop, max_new_tokens=6)[0],
        "on cache": greedy_decode(
            m.model,
            branches,
            prefix_ids=prefix,
            prefix_cache=encode_prefix(m.model, prefix, m.device),
            stop_ids=stop,
            max_new_tokens=6,
            pad_id=m.pad_id,
        ),
        "alone, padded": greedy_decode(
            m.model, [prefix + b for b in branches], stop_ids=stop, max_new_tokens=6, pad_id=m.pad_id
        ),
        "drafted": decode_tree(m.model, prefix, branches, stop_ids=stop, max_new_tokens=6, lookup=lookup)[0],
    }
    for name, got in variants.items():
        for generated, (tokens, logprobs) in zip(got, expected):
            assert generated.token_ids == tokens, name
            assert generated.logprobs == pytest.approx(logprobs, abs=2e-4), name


def test_a_worker_on_gemma_keeps_its_windows_inside_the_sliding_window(gemma_engine_model, serving_engine_model):
    """Gemma 3's local layers see 512 tokens back, and the engine's masks do not cut them: a worker on it accepts
    only windows whose prompt fits (the window, the template, the longest mention); a Llama-shaped model has no
    such limit."""
    from workers.backends.embedded import PROMPT_TOKENS, EmbeddedBackend
    from workers.server import WorkerService

    assert gemma_engine_model.attention_window == 512 and serving_engine_model.attention_window is None
    gemma = WorkerService(EmbeddedBackend(gemma_engine_model, max_mention_tokens=48), max_window_tokens=512)
    assert gemma.max_window_tokens == 512 - PROMPT_TOKENS - 48
    assert WorkerService(EmbeddedBackend(serving_engine_model), max_window_tokens=512).max_window_tokens == 512
