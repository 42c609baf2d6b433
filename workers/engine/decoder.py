"""Batched greedy decoding of many short branches that continue one shared, once-encoded prefix.

    prefix ids --forward once--> prefix KV cache (batch 1)
    branches  --left-padded after the prefix, KV expanded to the batch--> first tokens
    loop: one token per live branch; a branch that emits a stop token leaves the batch (early exit)

Without a prefix (`prefix_ids=()`), every branch is a whole prompt, encoded on its own, in one padded batch:
the paper's batch mode, kept as the baseline that shows what prefix sharing saves.
Position ids are explicit, so padding between the prefix and a branch changes nothing the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import DynamicCache


@dataclass
class Generated:
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str = "length"  # "stop" (a stop token, not kept in token_ids) or "length"
    stop_token_id: int | None = None
    stop_logprob: float | None = None

    @property
    def generated_tokens(self) -> int:
        """Forward steps this sequence took: its tokens plus the stop token, if any."""
        return len(self.token_ids) + (1 if self.finish == "stop" else 0)

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))


@dataclass
class DecodeStats:
    forward_calls: int = 0
    prefill_tokens: int = 0


def encode_prefix(model, prefix_ids: Sequence[int], device) -> DynamicCache:
    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        # the decoder stack only: the prefix's logits are never used, so the vocabulary projection is skipped
        model.model(input_ids=torch.tensor([list(prefix_ids)], device=device), cache=cache, use_cache=True)
    return cache


def _expanded(cache: DynamicCache, batch: int, model) -> DynamicCache:
    return DynamicCache(
        ddp_cache_data=[(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
                        for layer in cache.layers],
        config=model.config,
    )


@torch.inference_mode()
def greedy_decode(
    model,
    branches: Sequence[Sequence[int]],
    *,
    prefix_ids: Sequence[int] = (),
    prefix_cache: DynamicCache | None = None,
    stop_ids: set[int] | frozenset[int],
    max_new_tokens: int,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
) -> list[Generated]:
    """Greedy continuation of every branch (after the prefix, if any) until a stop token or max_new_tokens."""
    if not branches:
        return []
    if any(len(b) == 0 for b in branches):
        raise ValueError("every branch needs at least one token")
    device = next(model.parameters()).device
    stats = stats or DecodeStats()
    prefix_len = len(prefix_ids)
    if prefix_len and prefix_cache is None:
        prefix_cache = encode_prefix(model, prefix_ids, device)
        stats.forward_calls += 1
        stats.prefill_tokens += prefix_len
    batch = len(branches)
    width = max(len(b) for b in branches)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    branch_mask = torch.zeros((batch, width), dtype=torch.long)
    positions = torch.zeros((batch, width), dtype=torch.long)
    for row, branch in enumerate(branches):
        offset = width - len(branch)
        input_ids[row, offset:] = torch.tensor(list(branch))
        branch_mask[row, offset:] = 1
        positions[row, offset:] = torch.arange(prefix_len, prefix_len + len(branch))
    attention = torch.cat([torch.ones((batch, prefix_len), dtype=torch.long), branch_mask], dim=1).to(device)
    cache = _expanded(prefix_cache, batch, model) if prefix_len else DynamicCache(config=model.config)
    next_position = positions[:, -1].to(device) + 1
    out = model(input_ids=input_ids.to(device), attention_mask=attention, position_ids=positions.to(device),
                cache=cache, use_cache=True, logits_to_keep=1)  # only the last position's logits are needed
    stats.forward_calls += 1
    stats.prefill_tokens += int(branch_mask.sum())

    results = [Generated() for _ in branches]
    live = list(range(batch))  # result index of each row still in the batch
    logits = out.logits[:, -1, :]
    for step in range(max_new_tokens):
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.argmax(dim=-1)
        chosen_logprob = logprobs.gather(1, chosen[:, None])[:, 0]
        keep_rows = []
        for row, index in enumerate(live):
            token, logprob = int(chosen[row]), float(chosen_logprob[row])
            if token in stop_ids:
                results[index].finish = "stop"
                results[index].stop_token_id = token
                results[index].stop_logprob = logprob
            else:
                results[index].token_ids.append(token)
                results[index].logprobs.append(logprob)
                keep_rows.append(row)
        if not keep_rows or step == max_new_tokens - 1:
            break
        if len(keep_rows) < len(live):  # early exit: finished branches leave the batch
            select = torch.tensor(keep_rows, device=device)
            cache.batch_select_indices(select)
            attention = attention.index_select(0, select)
            next_position = next_position.index_select(0, select)
            chosen = chosen.index_select(0, select)
            live = [live[row] for row in keep_rows]
        attention = torch.cat([attention, torch.ones((len(live), 1), dtype=attention.dtype, device=device)], dim=1)
        out = model(input_ids=chosen[:, None], attention_mask=attention, position_ids=next_position[:, None],
                    cache=cache, use_cache=True)
        stats.forward_calls += 1
        next_position = next_position + 1
        logits = out.logits[:, -1, :]
    return results
