"""The latency floor of a document on a model: what no decoding strategy can go below at batch 1.

PaDeLLM's sequences are independent except along one chain per label: the count's tokens, then (on the count)
a mention's tokens. However many sequences run in parallel, a document needs at least one prefill of its prompt
and then one forward per further token of its longest chain. The floor times exactly that on the same model:
one forward over the prompt of the window and label holding the longest chain, then, one token at a time on
its cache, a forward for each remaining count token, one for the mention's prompt suffix and one for each
remaining mention token. Other windows and labels are left out: they only add work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from padellm_ner.core import LabelSchema
from padellm_ner.core.aggregate import CountResult, MentionResult
from padellm_ner.core.templates import template_for

from .loading import EngineModel


def longest_chain(counts: Sequence[CountResult], mentions: Sequence[MentionResult]) -> tuple[int, str, int]:
    """(window, label, forwards after the prefill) of the longest sequential chain of a decoded document."""
    longest_mention: dict[tuple[int, str], int] = {}
    for m in mentions:
        key = (m.window, m.label)
        longest_mention[key] = max(longest_mention.get(key, 0), m.generated_tokens)
    best = (0, counts[0].label if counts else "", 0)
    for c in counts:
        mention = longest_mention.get((c.window, c.label), 0)
        forwards = max(c.generated_tokens - 1, 0) + (mention if mention else 0)  # suffix forward + mention - 1
        if forwards > best[2]:
            best = (c.window, c.label, forwards)
    return best


@torch.inference_mode()
def time_chain(engine_model: EngineModel, prompt_ids: list[int], forwards: int) -> float:
    """Seconds for one prefill of `prompt_ids` then `forwards` single-token forwards on its cache, at batch 1."""
    model, device = engine_model.model, engine_model.device
    token = torch.tensor([prompt_ids[-1:]], device=device)
    started = time.perf_counter()
    out = model(input_ids=torch.tensor([prompt_ids], device=device), use_cache=True)
    cache = out.past_key_values
    for _ in range(forwards):
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        cache = out.past_key_values
    return time.perf_counter() - started


def latency_floor_s(
    engine_model: EngineModel,
    window_texts: Sequence[str],
    schema: LabelSchema,
    counts: Sequence[CountResult],
    mentions: Sequence[MentionResult],
) -> float:
    """The floor of a document decoded into `counts` and `mentions` over its windows `window_texts`."""
    window, label, forwards = longest_chain(counts, mentions)
    template = template_for(schema.language)
    prompt = template.shared_prefix(window_texts[window]) + template.label_branch(schema.prompt_word(label))
    return time_chain(engine_model, engine_model.encode(prompt, special=True), forwards)
