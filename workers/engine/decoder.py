"""Batched greedy decoding of many short branches that continue one shared, once-encoded prefix.

    prefix + every branch --one forward, block mask: a branch sees the prefix and itself--> first tokens
        (or, when the prefix's KV cache is already known: the branches alone, on that cache)
    the KV of the prefix and of each branch --gathered into one row per branch--> the batch's cache
    loop: one token per live branch; a branch that emits a stop token leaves the batch (early exit)

The first step is the one-forward prefill of a tree: the document and all its label (or mention) branches are
read together, as the training packs them (workers/training/packing.py), instead of one forward for the
document and a second one for the branches. Without a prefix (`prefix_ids=()`), every branch is a whole prompt,
encoded on its own, in one padded batch: the paper's batch mode, kept as the baseline that shows what prefix
sharing saves. Position ids are explicit, so padding between the prefix and a branch changes nothing the
model sees. `read_tree` stops after each branch's first token; `continue_tree` appends continuations of those
branches to the same row in one forward and also returns the model's greedy next token at chosen positions
among them, so the engine can confirm a token it assumed (a count's stop) in the forward that starts the next
step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from transformers import DynamicCache

from .lookup import PromptLookup


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
    drafted_tokens: int = 0  # prompt lookup: tokens fed as drafts, and those greedy decoding agreed with
    accepted_tokens: int = 0


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


@dataclass
class _Prefill:
    cache: DynamicCache | None  # one row per branch: [prefix | left padding | branch]; None: nothing to decode
    attention: torch.Tensor  # [batch, prefix + width], 0 on the padding
    next_position: torch.Tensor  # [batch]: the position of each branch's next token
    logits: torch.Tensor  # [batch, vocab]: at each branch's last token


def _layout(branches: Sequence[Sequence[int]], prefix_len: int):
    """Left-padded branch ids, their mask and their positions (continuing the prefix)."""
    batch, width = len(branches), max(len(b) for b in branches)
    branch_mask = torch.zeros((batch, width), dtype=torch.long)
    positions = torch.zeros((batch, width), dtype=torch.long)
    for row, branch in enumerate(branches):
        offset = width - len(branch)
        branch_mask[row, offset:] = 1
        positions[row, offset:] = torch.arange(prefix_len, prefix_len + len(branch))
    return width, branch_mask, positions


def _prefill_on_cache(model, branches, prefix_len: int, prefix_cache: DynamicCache | None, pad_id: int,
                      device) -> _Prefill:
    """The branches in one padded batch, continuing a known prefix cache (or none: whole prompts)."""
    batch = len(branches)
    width, branch_mask, positions = _layout(branches, prefix_len)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    for row, branch in enumerate(branches):
        input_ids[row, width - len(branch):] = torch.tensor(list(branch))
    attention = torch.cat([torch.ones((batch, prefix_len), dtype=torch.long), branch_mask], dim=1).to(device)
    cache = _expanded(prefix_cache, batch, model) if prefix_len else DynamicCache(config=model.config)
    out = model(input_ids=input_ids.to(device), attention_mask=attention, position_ids=positions.to(device),
                cache=cache, use_cache=True, logits_to_keep=1)  # only the last position's logits are needed
    return _Prefill(cache, attention, positions[:, -1].to(device) + 1, out.logits[:, -1, :])


@dataclass
class Tree:
    """A prefix and branches read in one row: the cache holds the prefix, then each branch after the other (then
    whatever was read after them); a branch's tokens see the prefix and, causally, themselves."""
    cache: DynamicCache
    prefix_len: int
    spans: list[tuple[int, int]]  # (start in the row, length) of every branch; its positions follow the prefix
    cache_config: object  # the model's config, which a new cache needs

    def prefix_cache(self) -> DynamicCache:
        """The prefix alone, for later branches of the same document: its rows saw only the prefix, so it equals
        a prefix-only encoding. A new cache (filling it copies the tensors), built only where it is needed."""
        return DynamicCache(ddp_cache_data=[(layer.keys[:, :, :self.prefix_len], layer.values[:, :, :self.prefix_len])
                                            for layer in self.cache.layers], config=self.cache_config)

    def branch_columns(self, branch: int) -> list[int]:
        start, length = self.spans[branch]
        return list(range(start, start + length))


def _read_tree(model, prefix_ids, branches, device) -> tuple[Tree, torch.Tensor]:
    """One forward over the prefix followed by every branch, with a block mask (a branch attends to the prefix
    and, causally, to itself) and positions that restart after the prefix for each branch. Returns the tree and
    the logits at each branch's last token."""
    prefix_len, lengths = len(prefix_ids), [len(b) for b in branches]
    total = prefix_len + sum(lengths)
    ids = list(prefix_ids) + [t for b in branches for t in b]
    mask = torch.zeros((total, total), dtype=torch.bool)
    mask[:prefix_len, :prefix_len] = torch.ones((prefix_len, prefix_len), dtype=torch.bool).tril()
    positions = list(range(prefix_len))
    spans, offset = [], prefix_len
    for length in lengths:
        mask[offset:offset + length, :prefix_len] = True
        mask[offset:offset + length, offset:offset + length] = torch.ones((length, length), dtype=torch.bool).tril()
        positions += range(prefix_len, prefix_len + length)
        spans.append((offset, length))
        offset += length
    cache = DynamicCache(config=model.config)
    hidden = model.model(input_ids=torch.tensor([ids], device=device), attention_mask=mask[None, None].to(device),
                         position_ids=torch.tensor([positions], device=device), cache=cache, use_cache=True
                         ).last_hidden_state[0]
    last = torch.tensor([start + length - 1 for start, length in spans], device=device)
    logits = model.get_output_embeddings()(hidden.index_select(0, last))  # the vocabulary only where needed
    return Tree(cache, prefix_len, spans, model.config), logits


def _gather_rows(model, tree: Tree, rows: Sequence[list[int]], logits: torch.Tensor, device) -> _Prefill:
    """One batch row per entry of `rows` (the tree columns that row's sequence consists of, after the prefix):
    [prefix | left padding (masked) | those columns], ready to decode from `logits` (one row each)."""
    prefix_len = tree.prefix_len
    width = max(len(columns) for columns in rows)
    gather = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
    gather[:, :prefix_len] = torch.arange(prefix_len)
    attention = torch.zeros((len(rows), prefix_len + width), dtype=torch.long)
    attention[:, :prefix_len] = 1
    for row, columns in enumerate(rows):
        gather[row, prefix_len + width - len(columns):] = torch.tensor(columns)
        attention[row, prefix_len + width - len(columns):] = 1
    next_position = torch.tensor([prefix_len + len(columns) for columns in rows])
    gather = gather.to(device)
    cache = DynamicCache(
        ddp_cache_data=[(layer.keys[0][:, gather].transpose(0, 1).contiguous(),
                         layer.values[0][:, gather].transpose(0, 1).contiguous())
                        for layer in tree.cache.layers],  # [heads, batch, seq, dim] -> [batch, heads, seq, dim]
        config=model.config)
    return _Prefill(cache, attention.to(device), next_position.to(device), logits)


def _prefill_tree(model, prefix_ids, branches, device) -> tuple[_Prefill, DynamicCache]:
    """The tree read in one forward, then gathered into one batch row per branch. Returns the batch prefill and
    the prefix's own cache (its rows saw only the prefix, so it equals a prefix-only encoding)."""
    tree, logits = _read_tree(model, prefix_ids, branches, device)
    rows = [tree.branch_columns(b) for b in range(len(branches))]
    return _gather_rows(model, tree, rows, logits, device), tree.prefix_cache()


@torch.inference_mode()
def decode_tree(
    model, prefix_ids: Sequence[int], branches: Sequence[Sequence[int]], *, stop_ids, max_new_tokens: int,
    stats: DecodeStats | None = None, lookup: PromptLookup | None = None,
) -> tuple[list[Generated], DynamicCache]:
    """Greedy continuation of every branch after a prefix that has no cache yet: the prefix and the branches
    are read in one forward. Also returns the prefix's cache, for later branches of the same document."""
    _check(branches)
    if not prefix_ids:
        raise ValueError("decode_tree needs a prefix")
    stats = stats or DecodeStats()
    if not branches:
        stats.forward_calls += 1
        stats.prefill_tokens += len(prefix_ids)
        return [], encode_prefix(model, prefix_ids, next(model.parameters()).device)
    prefill, prefix_cache = _prefill_tree(model, prefix_ids, branches, next(model.parameters()).device)
    stats.forward_calls += 1
    stats.prefill_tokens += len(prefix_ids) + sum(len(b) for b in branches)
    return _decode_loop(model, prefill, len(branches), stop_ids, max_new_tokens, stats, lookup), prefix_cache


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
    lookup: PromptLookup | None = None,
) -> list[Generated]:
    """Greedy continuation of every branch (after the prefix, if any) until a stop token or max_new_tokens.
    A prefix without a cache is read together with the branches (`decode_tree`)."""
    if not branches:
        return []
    _check(branches)
    if prefix_ids and prefix_cache is None:
        return decode_tree(model, prefix_ids, branches, stop_ids=stop_ids, max_new_tokens=max_new_tokens,
                           stats=stats, lookup=lookup)[0]
    stats = stats or DecodeStats()
    prefill = _prefill_on_cache(model, branches, len(prefix_ids), prefix_cache, pad_id,
                                next(model.parameters()).device)
    stats.forward_calls += 1
    stats.prefill_tokens += sum(len(b) for b in branches)
    return _decode_loop(model, prefill, len(branches), stop_ids, max_new_tokens, stats, lookup)


@torch.inference_mode()
def read_tree(model, prefix_ids: Sequence[int], branches: Sequence[Sequence[int]], *, stop_ids,
              stats: DecodeStats | None = None) -> tuple[list[Generated], Tree]:
    """The tree forward of `decode_tree` without decoding: each branch's greedy first token (a stop token ends
    it) and the tree, to be continued by `continue_tree`."""
    _check(branches)
    if not prefix_ids or not branches:
        raise ValueError("read_tree needs a prefix and at least one branch")
    stats = stats or DecodeStats()
    device = next(model.parameters()).device
    tree, logits = _read_tree(model, prefix_ids, branches, device)
    stats.forward_calls += 1
    stats.prefill_tokens += len(prefix_ids) + sum(len(b) for b in branches)
    first = _decode_loop(model, _Prefill(None, torch.empty(0), torch.empty(0), logits), len(branches), stop_ids, 1,
                         stats)  # the first tokens come from the tree's logits: no forward
    return first, tree


@torch.inference_mode()
def continue_tree(
    model,
    tree: Tree,
    parents: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    check_at: Sequence[int | None],
    *,
    decide: Callable[[list[tuple[int, float] | None]], Sequence[bool]],
    stop_ids: set[int] | frozenset[int],
    max_new_tokens: int,
    stats: DecodeStats | None = None,
    lookup: PromptLookup | None = None,
) -> tuple[list[Generated | None], list[tuple[int, float] | None]]:
    """Branch `parents[i]` of the tree continued by the tokens `suffixes[i]` (a branch may be continued by several
    suffixes), all appended to the tree's row in one forward (a suffix sees the prefix, its parent branch and,
    causally, itself; nothing is padded or copied), then decoded greedily.

    The forward also returns the greedy next token at `check_at[i]` inside each suffix, and `decide(checks)`
    says which continuations go on decoding; the others are not decoded (their result is None). A caller thus
    confirms a token it assumed (the first token of a suffix) in the forward that starts the next step."""
    if not (len(parents) == len(suffixes) == len(check_at)):
        raise ValueError("one parent branch, suffix and check position (or None) per continuation")
    if not parents:
        return [], []
    _check(suffixes)
    stats = stats or DecodeStats()
    device = next(model.parameters()).device
    prefix_len, past = tree.prefix_len, tree.cache.get_seq_length()
    total = sum(len(suffix) for suffix in suffixes)
    mask = torch.zeros((total, past + total), dtype=torch.bool)
    mask[:, :prefix_len] = True
    positions, starts, offset = [], [], 0
    for parent, suffix in zip(parents, suffixes):
        start, length = tree.spans[parent]
        mask[offset:offset + len(suffix), start:start + length] = True
        mask[offset:offset + len(suffix), past + offset:past + offset + len(suffix)] = torch.ones(
            (len(suffix), len(suffix)), dtype=torch.bool).tril()
        positions += range(prefix_len + length, prefix_len + length + len(suffix))
        starts.append(offset)
        offset += len(suffix)
    ids = [t for suffix in suffixes for t in suffix]
    hidden = model.model(input_ids=torch.tensor([ids], device=device), attention_mask=mask[None, None].to(device),
                         position_ids=torch.tensor([positions], device=device), cache=tree.cache, use_cache=True
                         ).last_hidden_state[0]
    stats.forward_calls += 1
    stats.prefill_tokens += total
    checked = [i for i, at in enumerate(check_at) if at is not None]
    picks = [start + len(suffix) - 1 for start, suffix in zip(starts, suffixes)] + [starts[i] + check_at[i] for i in checked]
    picked = model.get_output_embeddings()(hidden.index_select(0, torch.tensor(picks, device=device)))
    checks: list[tuple[int, float] | None] = [None] * len(parents)
    if checked:
        logprobs = torch.log_softmax(picked[len(parents):].float(), dim=-1)
        best = logprobs.argmax(dim=-1)
        for i, token, logprob in zip(checked, best.tolist(), logprobs.gather(1, best[:, None])[:, 0].tolist()):
            checks[i] = (token, logprob)
    keep = [i for i, go_on in enumerate(decide(checks)) if go_on]
    results: list[Generated | None] = [None] * len(parents)
    if keep:
        rows = [tree.branch_columns(parents[i]) + list(range(past + starts[i], past + starts[i] + len(suffixes[i])))
                for i in keep]
        prefill = _gather_rows(model, tree, rows, picked.index_select(0, torch.tensor(keep, device=device)), device)
        for i, generated in zip(keep, _decode_loop(model, prefill, len(keep), stop_ids, max_new_tokens, stats,
                                                         lookup)):
            results[i] = generated
    return results, checks


def _check(branches) -> None:
    if any(len(b) == 0 for b in branches):
        raise ValueError("every branch needs at least one token")


def _decode_loop(model, prefill: _Prefill, batch: int, stop_ids, max_new_tokens: int,
                 stats: DecodeStats, lookup: PromptLookup | None = None) -> list[Generated]:
    """Greedy tokens of every row from its logits on, until a stop token or max_new_tokens.

    With `lookup`, a row's next token is fed together with a draft of the tokens after it (workers.engine.lookup)
    and the forward's logits verify the draft: the longest prefix the greedy choice agrees with is kept, the
    rest of it is masked out of the cache, and decoding goes on from the first token the model chose itself.
    The tokens are those of plain greedy decoding; a row takes fewer forwards where its draft was right."""
    device = prefill.logits.device
    cache, attention, next_position, logits = prefill.cache, prefill.attention, prefill.next_position, prefill.logits
    results = [Generated() for _ in range(batch)]
    live = list(range(batch))  # result index of each row still in the batch
    while max_new_tokens > 0:
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        chosen = logprobs.argmax(dim=-1)
        chosen_logprob = logprobs.gather(1, chosen[:, None])[:, 0]
        keep_rows = []
        for row, index in enumerate(live):
            token, logprob, result = int(chosen[row]), float(chosen_logprob[row]), results[index]
            if token in stop_ids:
                result.finish = "stop"
                result.stop_token_id = token
                result.stop_logprob = logprob
                continue
            result.token_ids.append(token)
            result.logprobs.append(logprob)
            if len(result.token_ids) < max_new_tokens:
                keep_rows.append(row)
        if not keep_rows:
            break
        if len(keep_rows) < len(live):  # early exit: finished branches leave the batch
            select = torch.tensor(keep_rows, device=device)
            cache.batch_select_indices(select)
            attention = attention.index_select(0, select)
            next_position = next_position.index_select(0, select)
            chosen = chosen.index_select(0, select)
            live = [live[row] for row in keep_rows]
        drafts = [lookup.draft(results[index].token_ids, max_new_tokens - len(results[index].token_ids) - 1, stop_ids)
                  if lookup else [] for index in live]
        width = 1 + max(len(d) for d in drafts)
        fed = chosen[:, None].expand(len(live), width).clone()  # draft-less columns repeat the token, masked out
        new_columns = torch.zeros((len(live), width), dtype=attention.dtype)
        new_columns[:, 0] = 1
        for row, draft in enumerate(drafts):
            if draft:
                fed[row, 1:1 + len(draft)] = torch.tensor(draft, device=device)
                new_columns[row, 1:1 + len(draft)] = 1
        attention = torch.cat([attention, new_columns.to(device)], dim=1)
        positions = next_position[:, None] + torch.arange(width, device=device)
        hidden = model.model(input_ids=fed, attention_mask=attention, position_ids=positions, cache=cache,
                             use_cache=True).last_hidden_state
        stats.forward_calls += 1
        stats.drafted_tokens += sum(len(d) for d in drafts)
        # the vocabulary only where a token is checked: after the fed token and after each drafted one (without
        # drafts: one position per row, the plain greedy step)
        rows = torch.tensor([row for row, d in enumerate(drafts) for _ in range(1 + len(d))], device=device)
        columns = torch.tensor([column for d in drafts for column in range(1 + len(d))], device=device)
        checked = model.get_output_embeddings()(hidden[rows, columns])  # [sum(1 + len(draft)), vocab]
        greedy = checked.argmax(dim=-1).tolist() if width > 1 else []  # without drafts nothing is verified
        accepted, at, offsets = [], 0, []
        for row, (index, draft) in enumerate(zip(live, drafts)):
            taken = 0
            while taken < len(draft) and greedy[at + taken] == draft[taken]:
                taken += 1
            if taken:
                draft_logprobs = torch.log_softmax(checked[at:at + taken].float(), dim=-1)
                results[index].token_ids.extend(draft[:taken])
                results[index].logprobs.extend(
                    draft_logprobs.gather(1, torch.tensor(draft[:taken], device=device)[:, None])[:, 0].tolist())
            attention[row, attention.shape[1] - width + 1 + taken:] = 0  # the rejected rest of the draft
            accepted.append(taken)
            offsets.append(at + taken)  # the logits after the last kept token: where decoding goes on
            at += 1 + len(draft)
        stats.accepted_tokens += sum(accepted)
        next_position = next_position + 1 + torch.tensor(accepted, device=device)
        logits = checked[torch.tensor(offsets, device=device)]
    return results
