"""The embedded PaDeLLM engine: two batched decoding steps per document, one shared prefix.

Step 1 decodes the count of every label in one batch; step 2 decodes every (label, k) mention in one batch.
With prefix sharing (default) the document ("text:\\n{text}\\nentity type:\\n") and every label's count branch
are read in one forward; step 2 continues each label's branch in the same cache, so the document and the
label are read once, and a one-digit count's stop token is confirmed in step 2's forward instead of a forward
of its own; finished sequences leave the batch. Without it, every prompt is encoded on its own (the paper's
batch mode). Parsing, de-duplication and grounding come from `padellm_ner.core.aggregate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from padellm_ner.core import (
    DEFAULT_MAX_COUNT, CountResult, DedupPolicy, DocumentPrediction, LabelSchema, MentionResult, aggregate,
    parse_counts, template_for,
)

from .decoder import DecodeStats, Generated, continue_tree, decode_tree, greedy_decode, read_tree
from .loading import EngineModel
from .lookup import DEFAULT_LOOKUP_TOKENS, PromptLookup, document_lookup

COUNT_MAX_NEW_TOKENS = 10  # as the official inference


@dataclass
class EngineResult:
    prediction: DocumentPrediction
    counts: list[CountResult]
    mentions: list[MentionResult]
    latency_s: float
    step_latency_s: dict[str, float] = field(default_factory=dict)
    forward_calls: int = 0
    prefill_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0

    @property
    def generated_tokens(self) -> int:
        return sum(c.generated_tokens for c in self.counts) + sum(m.generated_tokens for m in self.mentions)

    @property
    def tokens_per_sequence(self) -> float:
        """Tokens each label-mention sequence generates: its count step plus its mention step."""
        count_tokens = {c.label: c.generated_tokens for c in self.counts}
        per_sequence = [count_tokens[m.label] + m.generated_tokens for m in self.mentions]
        with_mentions = {m.label for m in self.mentions}
        per_sequence += [c.generated_tokens for c in self.counts if c.label not in with_mentions]
        return sum(per_sequence) / len(per_sequence) if per_sequence else 0.0


class PadellmEngine:
    def __init__(
        self, engine_model: EngineModel, *, prefix_sharing: bool = True, max_count: int = DEFAULT_MAX_COUNT,
        max_mention_tokens: int = 48, dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX, one_call: bool = True,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
    ):
        """`one_call=False` decodes as the service's multi mode must, where a Count call returns its counts
        before any Mention call is asked: every count decoded to its stop token, every mention branch read on
        the document's cache (the in-process comparator of that mode in `bench-serving`). `lookup_tokens`:
        the length of prompt-lookup drafts, copied from the document (0: plain greedy steps; same output)."""
        self.m = engine_model
        self.prefix_sharing = prefix_sharing
        self.one_call = one_call
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.dedup = dedup
        self.lookup_tokens = lookup_tokens
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})

    def _result(self, label: str, generated: Generated, k: int | None = None):
        raw = self.m.decode(generated.token_ids)
        if k is None:
            return CountResult(label, raw, generated.logprob, generated.generated_tokens)
        return MentionResult(label, k, raw, generated.logprob, generated.generated_tokens)

    def lookup_for(self, prefix: list[int], text: str) -> PromptLookup | None:
        """Drafts copied from the document's prompt, for mention sequences only (a count is a digit and a stop:
        nothing to copy); the same in every mode, so modes differ only in what they share."""
        return document_lookup(self.m, prefix, text, self.lookup_tokens)

    def _decode(self, prefix: list[int], cache, branches: list[list[int]], max_new: int, stats: DecodeStats,
                lookup: PromptLookup | None = None):
        if self.prefix_sharing:
            return greedy_decode(self.m.model, branches, prefix_ids=prefix, prefix_cache=cache,
                                 stop_ids=self.stop_ids, max_new_tokens=max_new, pad_id=self.m.pad_id, stats=stats,
                                 lookup=lookup)
        return greedy_decode(self.m.model, [prefix + b for b in branches], stop_ids=self.stop_ids,
                             max_new_tokens=max_new, pad_id=self.m.pad_id, stats=stats, lookup=lookup)

    def recognize(self, text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> EngineResult:
        labels = list(labels or schema.labels)
        template = template_for(schema.language)
        stats = DecodeStats()
        started = time.perf_counter()
        prefix = self.m.encode(template.shared_prefix(text), special=True)
        label_ids = {label: self.m.encode(template.label_branch(schema.prompt_word(label))) for label in labels}
        if not self.prefix_sharing:
            steps = self._separate_steps
        else:
            steps = self._shared_steps if self.one_call else self._count_then_mention_steps
        count_generated, mention_generated, step1 = steps(prefix, label_ids, labels, schema, stats,
                                                          self.lookup_for(prefix, text))
        counts = [self._result(label, count_generated[label]) for label in labels]
        parsed = parse_counts(counts, self.max_count)
        mentions = [self._result(label, mention_generated[(label, k)], k)
                    for label in labels for k in range(1, parsed[label].value + 1)]
        step2 = time.perf_counter()
        prediction = aggregate(text, labels, counts, mentions, language=schema.language, dedup=self.dedup,
                               max_count=self.max_count)
        finished = time.perf_counter()
        return EngineResult(
            prediction, counts, mentions, finished - started,
            {"count": step1 - started, "mention": step2 - step1, "aggregate": finished - step2},
            stats.forward_calls, stats.prefill_tokens, stats.drafted_tokens, stats.accepted_tokens,
        )

    def _mention_asks(self, label: str, schema: LabelSchema, count: int) -> list[tuple[tuple[str, int], list[int]]]:
        """The step-2 branches of one label (after the shared prefix): ((label, k), token ids), k = 1..count."""
        template = template_for(schema.language)
        branch = template.label_branch(schema.prompt_word(label))
        return [((label, k), self.m.encode(branch + template.mention_suffix(count, k))) for k in range(1, count + 1)]

    def _mentions_of(self, counts: dict[str, Generated], prefix, cache, schema: LabelSchema, stats: DecodeStats,
                     lookup: PromptLookup | None):
        """Step 2 for decoded counts: every (label, k) branch in one batch, on the prefix cache or (no cache)
        each prompt whole."""
        parsed = parse_counts([self._result(label, g) for label, g in counts.items()], self.max_count)
        asks = [ask for label in counts for ask in self._mention_asks(label, schema, parsed[label].value)]
        generated = self._decode(prefix, cache, [ids for _, ids in asks], self.max_mention_tokens, stats, lookup)
        return {ask: g for (ask, _), g in zip(asks, generated)}

    def _separate_steps(self, prefix, label_ids, labels, schema, stats, lookup):
        """Without prefix sharing (the paper's batch mode): the count prompts in one batch, decoded to their stop
        token; then every mention prompt, each encoded on its own, in one batch."""
        generated = self._decode(prefix, None, [label_ids[label] for label in labels], COUNT_MAX_NEW_TOKENS, stats)
        counts = dict(zip(labels, generated))
        step1 = time.perf_counter()
        return counts, self._mentions_of(counts, prefix, None, schema, stats, lookup), step1

    def _count_then_mention_steps(self, prefix, label_ids, labels, schema, stats, lookup):
        """With prefix sharing, as two separate calls: the document and the count branches in one forward, the
        counts decoded to their stop token; then every mention branch on the document's cache."""
        generated, cache = decode_tree(self.m.model, prefix, [label_ids[label] for label in labels],
                                       stop_ids=self.stop_ids, max_new_tokens=COUNT_MAX_NEW_TOKENS, stats=stats)
        counts = dict(zip(labels, generated))
        step1 = time.perf_counter()
        return counts, self._mentions_of(counts, prefix, cache, schema, stats, lookup), step1

    def _shared_steps(self, prefix, label_ids, labels, schema, stats, lookup):
        """With prefix sharing: the document and the count branches in one forward; step 2 continues each label's
        count branch, so neither the document nor the label is read again.

        A count is almost always one digit and a stop token. The stop is not decoded in a forward of its own:
        the forward that starts step 2 reads the digit at the head of each label's continuations (for a count of
        0, a continuation that only checks) and confirms that the model's next token there is a stop, the token
        greedy decoding would take. A count it cannot confirm (10 or more, not a digit) is decoded in full and
        its mentions asked in a second round. Every count and mention equals plain greedy decoding of its prompt
        (tests/test_engine.py); a document takes one forward fewer.
        """
        first, tree = read_tree(self.m.model, prefix, [label_ids[label] for label in labels],
                                stop_ids=self.stop_ids, stats=stats)
        step1 = time.perf_counter()
        rows, suffixes, check_at, asks = [], [], [], []  # asks: (label, k); k None: a check-only continuation
        assumed: dict[str, Generated] = {}
        for row, (label, generated) in enumerate(zip(labels, first)):
            digit = self._single_digit(generated)
            if digit is None:
                continue
            branch = label_ids[label]
            if digit == 0:
                continuations = [((label, None), generated.token_ids)]
            else:
                continuations = []
                for ask, ids in self._mention_asks(label, schema, digit):
                    if ids[: len(branch) + 1] != branch + generated.token_ids:
                        break  # the digit is not a token of its own after the branch: take the general path
                    continuations.append((ask, ids[len(branch):]))
                if len(continuations) < digit:
                    continue
            assumed[label] = generated
            for i, (ask, suffix) in enumerate(continuations):
                rows.append(row)
                suffixes.append(suffix)
                check_at.append(0 if i == 0 else None)
                asks.append(ask)
        confirmed: set[str] = set()

        def decide(checks):
            for ask, at, check in zip(asks, check_at, checks):
                if at is not None and check[0] in self.stop_ids:
                    confirmed.add(ask[0])
            return [ask[1] is not None and ask[0] in confirmed for ask in asks]

        decoded, checks = continue_tree(self.m.model, tree, rows, suffixes, check_at, decide=decide,
                                        stop_ids=self.stop_ids, max_new_tokens=self.max_mention_tokens, stats=stats,
                                        lookup=lookup)
        counts: dict[str, Generated] = {}
        mentions: dict[tuple[str, int], Generated] = {}
        for ask, at, check, generated in zip(asks, check_at, checks, decoded):
            label = ask[0]
            if at is not None and label in confirmed:
                g = assumed[label]
                counts[label] = Generated(list(g.token_ids), list(g.logprobs), "stop", check[0], check[1])
            if generated is not None:
                mentions[ask] = generated
        for label, generated in zip(labels, first):
            if generated.finish == "stop":  # the count ended at once (empty): nothing to confirm
                counts[label] = generated
        pending = [label for label in labels if label not in counts]
        if pending:  # counts not confirmed: decoded in full, then their mentions
            prefix_cache = tree.prefix_cache()
            full = self._decode(prefix, prefix_cache, [label_ids[label] for label in pending],
                                COUNT_MAX_NEW_TOKENS, stats)
            late = dict(zip(pending, full))
            counts.update(late)
            mentions.update(self._mentions_of(late, prefix, prefix_cache, schema, stats, lookup))
        return counts, mentions, step1

    def _single_digit(self, generated: Generated) -> int | None:
        """The count a first token would give if the count stopped right after it, or None (stopped, or not a
        digit token)."""
        if generated.finish == "stop" or len(generated.token_ids) != 1:
            return None
        text = self.m.decode(generated.token_ids)
        if len(text) != 1 or not (text.isascii() and text.isdigit()) or int(text) > self.max_count:
            return None  # capped counts take the general path
        return int(text)
