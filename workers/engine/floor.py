"""The latency floor of a document on a model: what no schedule of its sequences can go below at batch 1.

PaDeLLM's sequences are independent except along one chain per label and window: the count, then (on the count)
each mention. However many sequences run in parallel, a document needs at least its longest chain decoded
alone: one prefill of the window's prompt with the label's branch, the count's tokens, then the mention's branch
on that cache and its tokens. The floor times exactly that, with the engine's own decoding (the same greedy steps
and prompt-lookup drafts), at batch 1 on the same model; every other sequence only adds work.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from padellm_ner.core import LabelSchema
from padellm_ner.core.aggregate import CountResult, MentionResult, parse_result
from padellm_ner.core.templates import template_for

from .decoder import decode_tree, greedy_decode


def longest_chain(counts: Sequence[CountResult], mentions: Sequence[MentionResult]) -> tuple[int, str, int | None, int]:
    """(window, label, k of its longest mention or None, chain tokens) of a decoded document's longest chain."""
    longest_mention: dict[tuple[int, str], tuple[int, int]] = {}  # (window, label) -> (tokens, k)
    for m in mentions:
        key = (m.window, m.label)
        if m.generated_tokens > longest_mention.get(key, (-1, 0))[0]:
            longest_mention[key] = (m.generated_tokens, m.k)
    best: tuple[int, str, int | None, int] = (0, counts[0].label if counts else "", None, -1)
    for c in counts:
        tokens, k = longest_mention.get((c.window, c.label), (0, None))
        if c.generated_tokens + tokens > best[3]:
            best = (c.window, c.label, k, c.generated_tokens + tokens)
    return best


@torch.inference_mode()
def latency_floor_s(
    engine,
    window_texts: Sequence[str],
    schema: LabelSchema,
    counts: Sequence[CountResult],
    mentions: Sequence[MentionResult],
) -> float:
    """The floor of a document that `engine` (a PadellmEngine) decoded into `counts` and `mentions` over its
    windows `window_texts`: its longest chain decoded alone by the engine's decoder, at batch 1."""
    from .padellm import COUNT_MAX_NEW_TOKENS

    window, label, k, _ = longest_chain(counts, mentions)
    model, template = engine.engine_model, template_for(schema.language)
    prefix = model.encode(template.shared_prefix(window_texts[window]), special=True)
    branch = template.label_branch(schema.prompt_word(label))
    started = time.perf_counter()
    (count,), cache = decode_tree(
        model.model,
        prefix,
        [model.encode(branch)],
        stop_ids=engine.stop_ids,
        max_new_tokens=COUNT_MAX_NEW_TOKENS,
    )
    if k is not None:
        value = parse_result(CountResult(label, model.decode(count.token_ids)), engine.max_count).value
        greedy_decode(
            model.model,
            [model.encode(branch + template.mention_suffix(max(value, k), k))],
            prefix_ids=prefix,
            prefix_cache=cache,
            stop_ids=engine.stop_ids,
            max_new_tokens=engine.max_mention_tokens,
            pad_id=model.pad_id,
            lookup=engine.lookup_for(prefix, window_texts[window]),
        )
    return time.perf_counter() - started
