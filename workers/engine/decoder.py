"""Batched greedy decoding of many short branches that continue shared, once-encoded prefixes.

    trees (a prefix + its branches) --one forward, trees packed into rows, block mask: a branch sees its
        prefix and itself--> first tokens
        (or, when prefixes' KV caches are already known: the branches alone, on those caches)
    the KV of a prefix and of each of its branches --gathered into one row per branch--> the batch's cache
    loop: one token per live branch; a branch that emits a stop token leaves the batch (early exit)

The first step is the one-forward prefill of a forest: each window of a document (its prompt) and all its label
(or mention) branches form a tree, read together as the training packs them (workers/training/packing.py), and
all trees in the same forward. Without a prefix (`prefix_ids=()`), every branch is a whole prompt, encoded on its
own, in one padded batch: the paper's batch mode, kept as the baseline that shows what prefix sharing saves.
Position ids are explicit, so padding changes nothing the model sees. `read_forest` stops after each branch's
first token; `continue_forest` appends continuations of those branches to their rows in one forward and also
returns the model's greedy next token at chosen positions among them, so the engine can confirm a token it
assumed (a count's stop) in the forward that starts the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar, cast

import torch
from transformers import DynamicCache, PreTrainedConfig

from padellm_ner.core.aggregate import FinishReason

from .lookup import PromptLookup

Owner = TypeVar("Owner")  # who owns a row of a DecodeBatch (a result index, a caller)
Lookups = PromptLookup | Sequence[PromptLookup | None] | None
StopCheck = Callable[
    [], bool
]  # whether a decode's results are no longer wanted (its callers gave up)  # one for every sequence, or one per row


@dataclass
class Generated:
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: FinishReason = FinishReason.LENGTH  # STOP: at a stop token, which token_ids do not keep
    stop_token_id: int | None = None
    stop_logprob: float | None = None

    @property
    def generated_tokens(self) -> int:
        """Forward steps this sequence took: its tokens plus the stop token, if any."""
        return len(self.token_ids) + (1 if self.finish is FinishReason.STOP else 0)

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


def _kv(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every layer's (keys, values) of a filled cache: [batch, heads, seq, dim] each. (transformers types a layer
    as any kind of cache layer, keys possibly unset; a DynamicCache this module filled has them all.)"""
    return [
        (cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values))  # type: ignore[union-attr]
        for layer in cache.layers
    ]


def extended(cache: DynamicCache, kv: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> DynamicCache:
    """A new one-row cache: `cache` followed, along the sequence, by the (keys, values) `kv` of every layer."""
    return DynamicCache(
        ddp_cache_data=[
            (torch.cat([keys, more_keys], dim=2), torch.cat([values, more_values], dim=2))
            for (keys, values), (more_keys, more_values) in zip(_kv(cache), kv)
        ]
    )


def _expanded(cache: DynamicCache, batch: int, model) -> DynamicCache:
    return DynamicCache(
        ddp_cache_data=[
            (keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1)) for keys, values in _kv(cache)
        ],
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


def _prefill_on_cache(
    model, branches, prefix_len: int, prefix_cache: DynamicCache | None, pad_id: int, device
) -> _Prefill:
    """The branches in one padded batch, continuing a known prefix cache (or none: whole prompts)."""
    batch = len(branches)
    width, branch_mask, positions = _layout(branches, prefix_len)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    for row, branch in enumerate(branches):
        input_ids[row, width - len(branch) :] = torch.tensor(list(branch))
    attention = torch.cat([torch.ones((batch, prefix_len), dtype=torch.long), branch_mask], dim=1).to(device)
    cache = (
        _expanded(prefix_cache, batch, model)
        if prefix_len and prefix_cache is not None
        else DynamicCache(config=model.config)
    )
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=attention,
        position_ids=positions.to(device),
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )  # only the last position's logits are needed
    return _Prefill(cache, attention, positions[:, -1].to(device) + 1, out.logits[:, -1, :])


def _prefill_on_caches(
    model, groups: Sequence[tuple[int, DynamicCache, Sequence[Sequence[int]]]], pad_id: int, device
) -> _Prefill:
    """Branches of several known prefixes in one padded batch: `groups` holds (prefix length, its cache, its
    branches). Each row is [left padding | its prefix | padding | its branch]; the mask hides both paddings and
    the positions are explicit, so every row decodes as if alone on its prefix."""
    rows = [(g, branch) for g, (_, _, branches) in enumerate(groups) for branch in branches]
    longest = max(length for length, _, _ in groups)
    width = max(len(branch) for _, branch in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), longest + width), dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (g, branch) in enumerate(rows):
        length = groups[g][0]
        input_ids[row, width - len(branch) :] = torch.tensor(list(branch))
        attention[row, longest - length : longest] = 1
        attention[row, longest + width - len(branch) :] = 1
        positions[row, width - len(branch) :] = torch.arange(length, length + len(branch))
    layers = []
    known = [_kv(cache) for _, cache, _ in groups]
    for index in range(len(known[0])):
        keys, values = [], []
        for (length, _, branches), kv in zip(groups, known):
            pad = (0, 0, longest - length, 0)  # left padding of the sequence dimension
            keys.append(torch.nn.functional.pad(kv[index][0], pad).expand(len(branches), -1, -1, -1))
            values.append(torch.nn.functional.pad(kv[index][1], pad).expand(len(branches), -1, -1, -1))
        layers.append((torch.cat(keys), torch.cat(values)))
    cache = DynamicCache(ddp_cache_data=layers, config=model.config)
    attention = attention.to(device)
    out = model(
        input_ids=input_ids.to(device),
        attention_mask=attention,
        position_ids=positions.to(device),
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return _Prefill(cache, attention, positions[:, -1].to(device) + 1, out.logits[:, -1, :])


@torch.inference_mode()
def prefill_on_caches(
    model,
    groups: Sequence[tuple[int, DynamicCache, Sequence[Sequence[int]]]],
    *,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
) -> _Prefill:
    """The first forward of `decode_on_caches`: every branch of every group (prefix length, its cache, its
    branches, none empty) read on its prefix's cache, a row each, ready to decode (a `DecodeBatch`)."""
    for _, _, branches in groups:
        if not branches:
            raise ValueError("every group needs a branch")
        _check(branches)
    prefill = _prefill_on_caches(model, groups, pad_id, next(model.parameters()).device)
    if stats is not None:
        stats.forward_calls += 1
        stats.prefill_tokens += sum(len(b) for _, _, branches in groups for b in branches)
    return prefill


@torch.inference_mode()
def decode_on_caches(
    model,
    groups: Sequence[tuple[int, DynamicCache, Sequence[Sequence[int]]]],
    *,
    stop_ids,
    max_new_tokens: int,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
    lookup: Lookups = None,
    should_stop: StopCheck | None = None,
) -> list[list[Generated]]:
    """Greedy continuation of the branches of several prefixes whose caches are known (windows read before), in one
    batch: `groups` holds (prefix length, prefix cache, branches). Results per group. `lookup`: one per group."""
    groups = [g for g in groups]
    for _, _, branches in groups:
        _check(branches)
    stats = stats or DecodeStats()
    out: list[list[Generated]] = [[] for _ in groups]
    live = [g for g, (_, _, branches) in enumerate(groups) if branches]
    if not live:
        return out
    prefill = prefill_on_caches(model, [groups[g] for g in live], pad_id=pad_id, stats=stats)
    group_lookups = _per_row(lookup, len(groups))
    owners = [g for g in live for _ in groups[g][2]]
    flat = _decode_loop(
        model,
        prefill,
        len(owners),
        stop_ids,
        max_new_tokens,
        stats,
        [group_lookups[g] for g in owners],
        should_stop,
    )
    for g, generated in zip(owners, flat):
        out[g].append(generated)
    return out


ROW_TOKENS = 512  # trees are packed into rows of about this many tokens: little padding, bounded attention cost


@dataclass
class Forest:
    """Trees (a prefix and its branches) read in one forward. Trees are packed into as few rows as ROW_TOKENS
    allows, filled evenly, rows right-padded to the longest. A token sees
    only its own tree: a prefix itself, causally; a branch its tree's prefix and, causally, itself; positions
    restart at 0 for every tree and follow the prefix for each branch."""

    cache: DynamicCache  # [rows, heads, width, dim]
    trees: list[tuple[int, int, int]]  # (row, start column, length) of every tree's prefix
    spans: list[tuple[int, int, int, int]]  # (tree, row, start column, length) of every branch
    cache_config: PreTrainedConfig  # the model's config, which a new cache needs

    @property
    def rows(self) -> int:
        return _kv(self.cache)[0][0].shape[0]

    def prefix_cache(self, tree: int = 0) -> DynamicCache:
        """Tree `tree`'s prefix alone, for later branches of the same text: its columns saw only the prefix, so it
        equals a prefix-only encoding. A new cache (filling it copies the tensors), built only where needed."""
        row, start, length = self.trees[tree]
        return DynamicCache(
            ddp_cache_data=[
                (keys[row : row + 1, :, start : start + length], values[row : row + 1, :, start : start + length])
                for keys, values in _kv(self.cache)
            ],
            config=self.cache_config,
        )

    def prefix_len(self, branch: int) -> int:
        return self.trees[self.spans[branch][0]][2]

    def branch_row(self, branch: int) -> int:
        return self.spans[branch][1]

    def prefix_columns(self, branch: int) -> range:
        _, start, length = self.trees[self.spans[branch][0]]
        return range(start, start + length)

    def branch_columns(self, branch: int) -> list[int]:
        """The columns a sequence continuing `branch` consists of: its tree's prefix, then the branch."""
        _, _, start, length = self.spans[branch]
        return list(self.prefix_columns(branch)) + list(range(start, start + length))


def _pack_rows(sizes: Sequence[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """(row, start column) of every tree and the tokens of every row: as few rows as ROW_TOKENS allows, filled
    evenly (largest trees first, each into the emptiest row), so the rows' padding to the longest stays small."""
    rows = max(1, -(-sum(sizes) // ROW_TOKENS))
    owner = [0] * len(sizes)
    load = [0] * rows
    for tree in sorted(range(len(sizes)), key=lambda t: -sizes[t]):
        owner[tree] = min(range(rows), key=load.__getitem__)
        load[owner[tree]] += sizes[tree]
    placement, used = [], [0] * rows
    for tree, size in enumerate(sizes):  # within a row the trees keep their order
        placement.append((owner[tree], used[owner[tree]]))
        used[owner[tree]] += size
    return placement, used


def _read_forest(
    model, prefixes: Sequence[Sequence[int]], branches: Sequence[Sequence[Sequence[int]]], pad_id: int, device
) -> tuple[Forest, torch.Tensor]:
    """One forward over every prefix followed by its branches, trees packed into rows with a block mask. Returns
    the forest and the logits at each branch's last token (branches in tree order)."""
    sizes = [len(p) + sum(len(b) for b in bs) for p, bs in zip(prefixes, branches)]
    placement, used = _pack_rows(sizes)
    width = max(used)
    ids = torch.full((len(used), width), pad_id, dtype=torch.long)
    mask = torch.eye(width, dtype=torch.bool).repeat(len(used), 1, 1)  # padding sees itself only: no empty softmax
    positions = torch.zeros((len(used), width), dtype=torch.long)
    trees: list[tuple[int, int, int]] = []
    spans: list[tuple[int, int, int, int]] = []
    for tree, ((row, offset), prefix, tree_branches) in enumerate(zip(placement, prefixes, branches)):
        prefix_len = len(prefix)
        ids[row, offset : offset + sizes[tree]] = torch.tensor(list(prefix) + [t for b in tree_branches for t in b])
        mask[row, offset : offset + prefix_len, offset : offset + prefix_len] = torch.ones(
            (prefix_len, prefix_len), dtype=torch.bool
        ).tril()
        positions[row, offset : offset + prefix_len] = torch.arange(prefix_len)
        trees.append((row, offset, prefix_len))
        column = offset + prefix_len
        for branch in tree_branches:
            length = len(branch)
            mask[row, column : column + length, offset : offset + prefix_len] = True
            mask[row, column : column + length, column : column + length] = torch.ones(
                (length, length), dtype=torch.bool
            ).tril()
            positions[row, column : column + length] = torch.arange(prefix_len, prefix_len + length)
            spans.append((tree, row, column, length))
            column += length
    cache = DynamicCache(config=model.config)
    hidden = model.model(
        input_ids=ids.to(device),
        attention_mask=mask[:, None].to(device),
        position_ids=positions.to(device),
        cache=cache,
        use_cache=True,
    ).last_hidden_state
    last = hidden[
        torch.tensor([row for _, row, _, _ in spans], device=device),
        torch.tensor([start + length - 1 for _, _, start, length in spans], device=device),
    ]
    logits = model.get_output_embeddings()(last)  # the vocabulary only where needed
    return Forest(cache, trees, spans, model.config), logits


def _gathered(
    cache: DynamicCache, rows: Sequence[tuple[int, Sequence[int] | torch.Tensor]], width: int | None = None
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """One row per entry of `rows`: (the cache row it reads, the columns its sequence consists of, in order),
    right-aligned in `width` columns (default: the longest), the left padding masked. Returns every layer's (keys,
    values) and the mask. Keys carry their rotary position, so moving a column changes nothing."""
    device = _kv(cache)[0][0].device
    width = max(len(columns) for _, columns in rows) if width is None else width
    gather = torch.zeros((len(rows), width), dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (_, columns) in enumerate(rows):
        gather[row, width - len(columns) :] = torch.as_tensor(columns, dtype=torch.long).cpu()
        attention[row, width - len(columns) :] = 1
    source = torch.tensor([r for r, _ in rows], device=device)[:, None]
    gather = gather.to(device)
    layers = [
        (keys[source, :, gather].transpose(1, 2).contiguous(), values[source, :, gather].transpose(1, 2).contiguous())
        for keys, values in _kv(cache)
    ]  # [rows, width, heads, dim] -> [rows, heads, width, dim]
    return layers, attention.to(device)


def _gather_rows(
    model, forest: Forest, rows: Sequence[tuple[int, list[int]]], logits: torch.Tensor, device
) -> _Prefill:
    """One batch row per entry of `rows`: (the forest row it reads, the columns its sequence consists of: prefix,
    branch, continuation), left-padded (masked) to the longest, ready to decode from `logits` (one row each)."""
    layers, attention = _gathered(forest.cache, rows)
    next_position = torch.tensor([len(columns) for _, columns in rows], device=device)
    return _Prefill(DynamicCache(ddp_cache_data=layers, config=model.config), attention, next_position, logits)


def _forest_forward(model, prefixes, branches, pad_id: int, stats: DecodeStats):
    """The checked, counted forward of a forest: (forest, logits at each branch's last token, device)."""
    for tree_branches in branches:
        _check(tree_branches)
    if not prefixes or any(not p for p in prefixes) or len(prefixes) != len(branches):
        raise ValueError("a forest needs a non-empty prefix for every list of branches")
    device = next(model.parameters()).device
    forest, logits = _read_forest(model, prefixes, branches, pad_id, device)
    stats.forward_calls += 1
    stats.prefill_tokens += sum(len(p) for p in prefixes) + sum(len(b) for bs in branches for b in bs)
    return forest, logits, device


@torch.inference_mode()
def prefill_forest(
    model,
    prefixes: Sequence[Sequence[int]],
    branches: Sequence[Sequence[Sequence[int]]],
    *,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
) -> tuple[Forest, _Prefill]:
    """The first forward of `decode_forest`: every prefix and its branches in one forward, then one row per branch
    (branches in tree order: its prefix, the branch), ready to decode (a `DecodeBatch`). The forest serves the
    prefixes' caches."""
    forest, logits, device = _forest_forward(model, prefixes, branches, pad_id, stats or DecodeStats())
    if not forest.spans:
        return forest, _Prefill(None, torch.empty(0), torch.empty(0), logits)
    rows = [(forest.branch_row(b), forest.branch_columns(b)) for b in range(len(forest.spans))]
    return forest, _gather_rows(model, forest, rows, logits, device)


@torch.inference_mode()
def decode_forest(
    model,
    prefixes: Sequence[Sequence[int]],
    branches: Sequence[Sequence[Sequence[int]]],
    *,
    stop_ids,
    max_new_tokens: int,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
    lookup: Lookups = None,
    should_stop: StopCheck | None = None,
) -> tuple[list[list[Generated]], Forest]:
    """Greedy continuation of every branch of every prefix (`branches[r]` continue `prefixes[r]`): all prefixes
    and branches are read in one forward (trees packed into rows), then decoded in one batch. Returns the results
    per prefix and the forest (whose `prefix_cache(r)` serves later branches of prefix r). `lookup`: one for all
    branches, or one per prefix."""
    stats = stats or DecodeStats()
    forest, prefill = prefill_forest(model, prefixes, branches, pad_id=pad_id, stats=stats)
    flat: list[Generated] = []
    if forest.spans:
        tree_lookups = _per_row(lookup, len(prefixes))
        flat = _decode_loop(
            model,
            prefill,
            len(forest.spans),
            stop_ids,
            max_new_tokens,
            stats,
            [tree_lookups[tree] for tree, _, _, _ in forest.spans],
            should_stop,
        )
    out, at = [], 0
    for row_branches in branches:
        out.append(flat[at : at + len(row_branches)])
        at += len(row_branches)
    return out, forest


def decode_tree(
    model,
    prefix_ids: Sequence[int],
    branches: Sequence[Sequence[int]],
    *,
    stop_ids,
    max_new_tokens: int,
    stats: DecodeStats | None = None,
    lookup: PromptLookup | None = None,
) -> tuple[list[Generated], DynamicCache]:
    """Greedy continuation of every branch after a prefix that has no cache yet: the prefix and the branches
    are read in one forward. Also returns the prefix's cache, for later branches of the same document."""
    if not prefix_ids:
        raise ValueError("decode_tree needs a prefix")
    generated, forest = decode_forest(
        model, [prefix_ids], [branches], stop_ids=stop_ids, max_new_tokens=max_new_tokens, stats=stats, lookup=lookup
    )
    return generated[0], forest.prefix_cache(0)


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
    lookup: Lookups = None,
    should_stop: StopCheck | None = None,
) -> list[Generated]:
    """Greedy continuation of every branch (after the prefix, if any) until a stop token or max_new_tokens.
    A prefix without a cache is read together with the branches (`decode_tree`). `lookup`: one for all
    branches, or (on a known cache or without a prefix) one per branch."""
    if not branches:
        return []
    _check(branches)
    if prefix_ids and prefix_cache is None:
        if not (lookup is None or isinstance(lookup, PromptLookup)):
            raise ValueError("a prefix without a cache takes one lookup for all its branches")
        return decode_tree(
            model, prefix_ids, branches, stop_ids=stop_ids, max_new_tokens=max_new_tokens, stats=stats, lookup=lookup
        )[0]
    stats = stats or DecodeStats()
    prefill = _prefill_on_cache(model, branches, len(prefix_ids), prefix_cache, pad_id, next(model.parameters()).device)
    stats.forward_calls += 1
    stats.prefill_tokens += sum(len(b) for b in branches)
    return _decode_loop(model, prefill, len(branches), stop_ids, max_new_tokens, stats, lookup, should_stop)


@torch.inference_mode()
def read_forest(
    model,
    prefixes: Sequence[Sequence[int]],
    branches: Sequence[Sequence[Sequence[int]]],
    *,
    stop_ids,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
) -> tuple[list[Generated], Forest]:
    """The forest forward of `decode_forest` without decoding: each branch's greedy first token (a stop token ends
    it), branches in row order, and the forest, to be continued by `continue_forest`."""
    if any(not tree_branches for tree_branches in branches):
        raise ValueError("read_forest needs at least one branch in every tree")
    stats = stats or DecodeStats()
    forest, logits, _ = _forest_forward(model, prefixes, branches, pad_id, stats)
    first = _decode_loop(
        model, _Prefill(None, torch.empty(0), torch.empty(0), logits), len(forest.spans), stop_ids, 1, stats
    )  # the first tokens come from the forest's logits: no forward
    return first, forest


@torch.inference_mode()
def continue_forest(
    model,
    forest: Forest,
    parents: Sequence[int],
    suffixes: Sequence[Sequence[int]],
    check_at: Sequence[int | None],
    *,
    decide: Callable[[list[tuple[int, float] | None]], Sequence[bool]],
    stop_ids: set[int] | frozenset[int],
    max_new_tokens: int,
    pad_id: int = 0,
    stats: DecodeStats | None = None,
    lookup: Lookups = None,
) -> tuple[list[Generated | None], list[tuple[int, float] | None]]:
    """Branch `parents[i]` of the forest continued by the tokens `suffixes[i]` (a branch may be continued by several
    suffixes), each appended to its branch's row, all rows in one forward (a suffix sees its row's prefix, its
    parent branch and, causally, itself; nothing is copied), then decoded greedily.

    The forward also returns the greedy next token at `check_at[i]` inside each suffix, and `decide(checks)`
    says which continuations go on decoding; the others are not decoded (their result is None). A caller thus
    confirms a token it assumed (the first token of a suffix) in the forward that starts the next step.
    `lookup`: one for all, or one per tree."""
    if not (len(parents) == len(suffixes) == len(check_at)):
        raise ValueError("one parent branch, suffix and check position (or None) per continuation")
    if not parents:
        return [], []
    _check(suffixes)
    stats = stats or DecodeStats()
    device = next(model.parameters()).device
    rows = forest.rows
    past = forest.cache.get_seq_length()
    appended = [0] * rows  # tokens appended to each row so far
    placed: list[tuple[int, int]] = []  # (row, offset in the appended block) of each suffix
    for parent, suffix in zip(parents, suffixes):
        row = forest.branch_row(parent)
        placed.append((row, appended[row]))
        appended[row] += len(suffix)
    width = max(appended)
    ids = torch.full((rows, width), pad_id, dtype=torch.long)
    mask = torch.zeros((rows, width, past + width), dtype=torch.bool)
    mask[:, :, past:] = torch.eye(width, dtype=torch.bool)  # padding sees itself only
    positions = torch.zeros((rows, width), dtype=torch.long)
    for parent, suffix, (row, offset) in zip(parents, suffixes, placed):
        _, _, start, length = forest.spans[parent]
        prefix, prefix_len, n = forest.prefix_columns(parent), forest.prefix_len(parent), len(suffix)
        ids[row, offset : offset + n] = torch.tensor(list(suffix))
        block = mask[row, offset : offset + n]
        block[:, prefix.start : prefix.stop] = True
        block[:, start : start + length] = True
        block[:, past + offset : past + offset + n] = torch.ones((n, n), dtype=torch.bool).tril()
        positions[row, offset : offset + n] = torch.arange(prefix_len + length, prefix_len + length + n)
    hidden = model.model(
        input_ids=ids.to(device),
        attention_mask=mask[:, None].to(device),
        position_ids=positions.to(device),
        cache=forest.cache,
        use_cache=True,
    ).last_hidden_state
    stats.forward_calls += 1
    stats.prefill_tokens += sum(len(suffix) for suffix in suffixes)
    checked = [(i, at) for i, at in enumerate(check_at) if at is not None]
    pick_rows = [row for row, _ in placed] + [placed[i][0] for i, _ in checked]
    pick_columns = [offset + len(suffix) - 1 for (_, offset), suffix in zip(placed, suffixes)] + [
        placed[i][1] + at for i, at in checked
    ]
    picked = model.get_output_embeddings()(
        hidden[torch.tensor(pick_rows, device=device), torch.tensor(pick_columns, device=device)]
    )
    checks: list[tuple[int, float] | None] = [None] * len(parents)
    if checked:
        logprobs = torch.log_softmax(picked[len(parents) :].float(), dim=-1)
        best = logprobs.argmax(dim=-1)
        for (i, _), token, logprob in zip(checked, best.tolist(), logprobs.gather(1, best[:, None])[:, 0].tolist()):
            checks[i] = (token, logprob)
    keep = [i for i, go_on in enumerate(decide(checks)) if go_on]
    results: list[Generated | None] = [None] * len(parents)
    if keep:
        gathered = [
            (
                placed[i][0],
                forest.branch_columns(parents[i])
                + list(range(past + placed[i][1], past + placed[i][1] + len(suffixes[i]))),
            )
            for i in keep
        ]
        prefill = _gather_rows(
            model, forest, gathered, picked.index_select(0, torch.tensor(keep, device=device)), device
        )
        tree_lookups = _per_row(lookup, len(forest.trees))
        for i, generated in zip(
            keep,
            _decode_loop(
                model,
                prefill,
                len(keep),
                stop_ids,
                max_new_tokens,
                stats,
                [tree_lookups[forest.spans[parents[i]][0]] for i in keep],
            ),
        ):
            results[i] = generated
    return results, checks


def _per_row(lookup: Lookups, rows: int) -> list[PromptLookup | None]:
    if lookup is None or isinstance(lookup, PromptLookup):
        return [lookup] * rows
    if len(lookup) != rows:
        raise ValueError(f"{len(lookup)} lookups for {rows} rows")
    return list(lookup)


def _check(branches) -> None:
    if any(len(b) == 0 for b in branches):
        raise ValueError("every branch needs at least one token")


def _decode_loop(
    model,
    prefill: _Prefill,
    batch: int,
    stop_ids,
    max_new_tokens: int,
    stats: DecodeStats,
    lookup: Lookups = None,
    should_stop: StopCheck | None = None,
) -> list[Generated]:
    """Greedy tokens of every row from its logits on, until a stop token or max_new_tokens, or until
    `should_stop()` says the results are no longer wanted (checked before every forward; the rows are then cut
    where they are, finish LENGTH). A `DecodeBatch` run to its end."""
    rows = DecodeBatch(prefill, list(range(batch)), max_new_tokens, stop_ids, model.config, lookup)
    results: list[Generated | None] = [None] * batch
    while True:
        for finished in rows.choose():
            results[finished.owner] = finished.generated
        if not rows or (should_stop is not None and should_stop()):
            break
        rows.forward(model, stats)
    for owner, generated in rows.cut():
        results[owner] = generated
    return cast(list[Generated], results)


@dataclass
class Finished(Generic[Owner]):
    """A row that left a DecodeBatch: its owner, what it generated and, where asked for, the KV of its sequence."""

    owner: Owner
    generated: Generated
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None


class DecodeBatch(Generic[Owner]):
    """Rows being decoded greedily (in inference mode: no autograd graph ever holds the cache), each owned by an
    `Owner` (a result index, a caller): one token per row (plus its prompt-lookup draft) per forward, a row leaving
    the batch at its stop token or its own `max_new_tokens`.

    Between forwards the batch holds every row's next-token logits; `choose` takes the greedy tokens from them and
    returns the rows that finished, `forward` feeds the chosen tokens and computes the next logits. `merge` adds the
    rows of another prefill (left-padding the shorter cache: positions are explicit, the mask hides the padding),
    so calls that arrive while others decode join their forwards instead of waiting for them to end.

    With a lookup, a row's next token is fed together with a draft of the tokens after it (workers.engine.lookup)
    and the forward's logits verify the draft: the longest prefix the greedy choice agrees with is kept, the
    rest of it is masked out of the cache, and decoding goes on from the first token the model chose itself.
    The tokens are those of plain greedy decoding; a row takes fewer forwards where its draft was right. A draft
    costs compute: `forward(max_tokens=...)` shortens the drafts so that a forward feeds at most that many tokens
    (a large batch is compute-bound, where drafts would slow every row)."""

    def __init__(
        self,
        prefill: _Prefill,
        owners: Sequence[Owner],
        max_new_tokens: int | Sequence[int],
        stop_ids,
        config: PreTrainedConfig,
        lookup: Lookups = None,
    ):
        n = len(owners)
        self.cache, self.attention = prefill.cache, prefill.attention
        self.next_position, self.logits = prefill.next_position, prefill.logits
        self.owners: list[Owner] = list(owners)
        self.results = [Generated() for _ in range(n)]
        self.limits = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
        self.lookups = _per_row(lookup, n)
        self.stop_ids = stop_ids
        self.config = config
        self._chosen: torch.Tensor | None = None  # the tokens `choose` took, fed by the next `forward`
        if len(self.limits) != n or self.logits.shape[0] != n:
            raise ValueError("one owner, limit and logits row per row")

    def __len__(self) -> int:
        return len(self.owners)

    def _select(self, keep: list[int]) -> None:
        if len(keep) == len(self.owners):
            return
        device = self.logits.device
        select = torch.tensor(keep, device=device, dtype=torch.long)
        if self.cache is not None and keep:
            self.cache.batch_select_indices(select)
        if self.attention.dim() == 2:
            self.attention = self.attention.index_select(0, select)
            self.next_position = self.next_position.index_select(0, select)
        self.logits = self.logits.index_select(0, select)
        if self._chosen is not None:
            self._chosen = self._chosen.index_select(0, select)
        for name in ("owners", "results", "limits", "lookups"):
            values = getattr(self, name)
            setattr(self, name, [values[row] for row in keep])

    @torch.inference_mode()
    def choose(self, keep_kv: Callable[[Owner, Generated], bool] | None = None) -> list[Finished[Owner]]:
        """The greedy token of every row from its logits; the rows that finished (a stop token, their limit) leave
        the batch and are returned with their results, and, where `keep_kv(owner, generated)` says so, with the KV
        of the sequence they decoded (for later calls that continue it)."""
        logprobs = torch.log_softmax(self.logits.float(), dim=-1)
        chosen = logprobs.argmax(dim=-1)
        chosen_logprob = logprobs.gather(1, chosen[:, None])[:, 0]
        keep: list[int] = []
        done: list[int] = []
        for row, (token, logprob) in enumerate(zip(chosen.tolist(), chosen_logprob.tolist())):
            result = self.results[row]
            if token in self.stop_ids:
                result.finish = FinishReason.STOP
                result.stop_token_id = token
                result.stop_logprob = logprob
                done.append(row)
                continue
            result.token_ids.append(token)
            result.logprobs.append(logprob)
            (keep if len(result.token_ids) < self.limits[row] else done).append(row)
        finished = [
            Finished(
                self.owners[row],
                self.results[row],
                self._row_kv(row) if keep_kv is not None and keep_kv(self.owners[row], self.results[row]) else None,
            )
            for row in done
        ]
        self._chosen = chosen
        self._select(keep)
        return finished

    def _row_kv(self, row: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Row `row`'s KV without its padding or rejected drafts: [1, heads, tokens it read, dim] per layer."""
        assert self.cache is not None and self.attention.dim() == 2
        return _gathered(self.cache, [(row, self.attention[row].nonzero()[:, 0])])[0]

    @torch.inference_mode()
    def drop(self, wanted: Callable[[Owner], bool]) -> list[tuple[Owner, Generated]]:
        """Rows whose owner is no longer `wanted` leave the batch (cut where they are, finish LENGTH)."""
        keep = [row for row, owner in enumerate(self.owners) if wanted(owner)]
        kept = set(keep)
        dropped = [(self.owners[row], self.results[row]) for row in range(len(self.owners)) if row not in kept]
        self._select(keep)
        return dropped

    def cut(self) -> list[tuple[Owner, Generated]]:
        """Every row, where it is: the batch ends."""
        return self.drop(lambda _: False)

    @torch.inference_mode()
    def merge(self, other: DecodeBatch[Owner]) -> None:
        """Adds `other`'s rows; both batches hold logits (neither has chosen since its last forward). The narrower
        cache is left-padded with masked columns to the wider one's width, and each cache is copied once, into
        the merged one; columns no row attends to are dropped later, by `_compact`, where they are most of it."""
        if self._chosen is not None or other._chosen is not None:
            raise RuntimeError("merge batches between a forward and the next choose")
        if self.cache is None or other.cache is None:
            raise ValueError("only batches with a cache merge")
        width = max(self.attention.shape[1], other.attention.shape[1])
        rows = len(self.owners)
        layers = []
        for (k1, v1), (k2, v2) in zip(_kv(self.cache), _kv(other.cache)):
            merged = []
            for mine, theirs in ((k1, k2), (v1, v2)):
                out = mine.new_empty((rows + theirs.shape[0], mine.shape[1], width, mine.shape[3]))
                for at, part in ((slice(0, rows), mine), (slice(rows, None), theirs)):
                    pad = width - part.shape[2]
                    out[at, :, :pad].zero_()  # masked: zeros keep the attention's arithmetic finite
                    out[at, :, pad:] = part
                merged.append(out)
            layers.append((merged[0], merged[1]))
        self.cache = DynamicCache(ddp_cache_data=layers, config=self.config)
        self.attention = torch.cat(
            [torch.nn.functional.pad(batch.attention, (width - batch.attention.shape[1], 0)) for batch in (self, other)]
        )
        self.next_position = torch.cat([self.next_position, other.next_position])
        self.logits = torch.cat([self.logits, other.logits])
        self.owners += other.owners
        self.results += other.results
        self.limits += other.limits
        self.lookups += other.lookups

    def _compact(self) -> None:
        """Drops the columns no row attends to where they are most of the cache: the padding of rows that joined a
        batch with longer rows, drafts that were rejected. Each row keeps its attended columns, right-aligned.
        (Every forward copies the cache anyway.)"""
        attended = self.attention.sum(1)
        if len(self.owners) and int(attended.sum()) * 2 < self.attention.numel():
            assert self.cache is not None
            rows = [(row, self.attention[row].nonzero()[:, 0]) for row in range(len(self.owners))]
            layers, self.attention = _gathered(self.cache, rows, int(attended.max()))
            self.cache = DynamicCache(ddp_cache_data=layers, config=self.config)

    @torch.inference_mode()
    def forward(self, model, stats: DecodeStats, max_tokens: int | None = None) -> None:
        """Feeds every row's chosen token (and its draft) in one forward; the batch then holds the next logits."""
        if self._chosen is None:
            raise RuntimeError("choose before every forward")
        assert self.cache is not None, "a prefill without a cache decodes one token only (read_forest)"
        self._compact()
        chosen, self._chosen = self._chosen, None
        device = self.logits.device
        n = len(self.owners)
        room = None if max_tokens is None else max(0, max_tokens // max(1, n) - 1)  # draft tokens per row
        drafts = []
        for result, limit, lookup in zip(self.results, self.limits, self.lookups):
            left = limit - len(result.token_ids) - 1  # the last token of a row's limit is never drafted
            drafts.append(
                lookup.draft(result.token_ids, left if room is None else min(left, room), self.stop_ids)
                if lookup
                else []
            )
        width = 1 + max(len(d) for d in drafts)
        fed = chosen[:, None].expand(n, width).clone()  # draft-less columns repeat the token, masked out
        new_columns = torch.zeros((n, width), dtype=self.attention.dtype)
        new_columns[:, 0] = 1
        for row, draft in enumerate(drafts):
            if draft:
                fed[row, 1 : 1 + len(draft)] = torch.tensor(draft, device=device)
                new_columns[row, 1 : 1 + len(draft)] = 1
        attention = torch.cat([self.attention, new_columns.to(device)], dim=1)
        positions = self.next_position[:, None] + torch.arange(width, device=device)
        hidden = model.model(
            input_ids=fed, attention_mask=attention, position_ids=positions, cache=self.cache, use_cache=True
        ).last_hidden_state
        stats.forward_calls += 1
        stats.drafted_tokens += sum(len(d) for d in drafts)
        # the vocabulary only where a token is checked: after the fed token and after each drafted one (without
        # drafts: one position per row, the plain greedy step)
        rows = torch.tensor([row for row, d in enumerate(drafts) for _ in range(1 + len(d))], device=device)
        columns = torch.tensor([column for d in drafts for column in range(1 + len(d))], device=device)
        checked = model.get_output_embeddings()(hidden[rows, columns])  # [sum(1 + len(draft)), vocab]
        greedy = checked.argmax(dim=-1).tolist() if width > 1 else []  # without drafts nothing is verified
        accepted, at, offsets = [], 0, []
        for row, draft in enumerate(drafts):
            taken = 0
            while taken < len(draft) and greedy[at + taken] == draft[taken]:
                taken += 1
            if taken:
                draft_logprobs = torch.log_softmax(checked[at : at + taken].float(), dim=-1)
                self.results[row].token_ids.extend(draft[:taken])
                self.results[row].logprobs.extend(
                    draft_logprobs.gather(1, torch.tensor(draft[:taken], device=device)[:, None])[:, 0].tolist()
                )
            attention[row, attention.shape[1] - width + 1 + taken :] = 0  # the rejected rest of the draft
            accepted.append(taken)
            offsets.append(at + taken)  # the logits after the last kept token: where decoding goes on
            at += 1 + len(draft)
        stats.accepted_tokens += sum(accepted)
        self.attention = attention
        self.next_position = self.next_position + 1 + torch.tensor(accepted, device=device)
        self.logits = checked[torch.tensor(offsets, device=device)]
