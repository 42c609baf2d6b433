"""The embedded PaDeLLM engine: a document's windows decoded together, two batched steps, shared prefixes.

A document is planned by the core (`padellm_ner.core.plan`): split into windows of whole sentences, a count
per (window, label), a mention per (window, label, k). All windows are decoded in one batch (workers.engine.decoder:
the window trees packed into rows with a block mask).
Step 1 decodes the count of every label of every window; step 2 every (window, label, k) mention. With prefix
sharing (default) a window's prompt ("text:\\n{window}\\nentity type:\\n") and every label's count branch are
read in one forward, every window together; step 2 continues each label's branch in the same cache, so the window
and the label are read once, and a one-digit count's stop token is confirmed in step 2's forward instead of a
forward of its own; finished sequences leave the batch. Without it, every prompt is encoded on its own (the
paper's batch mode). The plan then merges: parsing, de-duplication and grounding per window, document offsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from padellm_ner.core import (
    DEFAULT_MAX_COUNT,
    CountResult,
    DedupPolicy,
    DocumentPrediction,
    LabelSchema,
    MentionResult,
    template_for,
)
from padellm_ner.core.aggregate import FinishReason, parse_result
from padellm_ner.core.plan import DocumentPlan
from padellm_ner.core.segment import WindowPolicy

from .decoder import (
    DecodeStats,
    Generated,
    continue_forest,
    decode_forest,
    decode_on_caches,
    greedy_decode,
    read_forest,
)
from .loading import EngineModel
from .lookup import DEFAULT_LOOKUP_TOKENS, PromptLookup, document_lookup

COUNT_MAX_NEW_TOKENS = 10  # as the official inference

Ask = tuple[int, str]  # (window, label)
MentionKey = tuple[int, str, int]  # (window, label, k)


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
    def windows(self) -> int:
        return self.prediction.windows

    @property
    def generated_tokens(self) -> int:
        return sum(c.generated_tokens for c in self.counts) + sum(m.generated_tokens for m in self.mentions)

    @property
    def tokens_per_sequence(self) -> float:
        """Tokens each label-mention sequence generates: its count step plus its mention step."""
        count_tokens = {(c.window, c.label): c.generated_tokens for c in self.counts}
        per_sequence = [count_tokens[(m.window, m.label)] + m.generated_tokens for m in self.mentions]
        with_mentions = {(m.window, m.label) for m in self.mentions}
        per_sequence += [c.generated_tokens for c in self.counts if (c.window, c.label) not in with_mentions]
        return sum(per_sequence) / len(per_sequence) if per_sequence else 0.0


@dataclass
class WindowsDecoded:
    """The sequences of a batch of windows (indices 0..n-1 in the order given)."""

    counts: list[CountResult]
    mentions: list[MentionResult]
    count_step_s: float
    stats: DecodeStats


class PadellmEngine:
    def __init__(
        self,
        engine_model: EngineModel,
        *,
        prefix_sharing: bool = True,
        max_count: int = DEFAULT_MAX_COUNT,
        max_mention_tokens: int = 48,
        dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX,
        one_call: bool = True,
        lookup_tokens: int = DEFAULT_LOOKUP_TOKENS,
        window_policy: WindowPolicy | None = None,
    ):
        """`one_call=False` decodes as the service's multi mode must, where a Count call returns its counts
        before any Mention call is asked: every count decoded to its stop token, every mention branch read on
        the window's cache (the in-process comparator of that mode in `bench-serving`). `lookup_tokens`:
        the length of prompt-lookup drafts, copied from the window (0: plain greedy steps; same output).
        `window_policy`: how documents are split (default: the core's)."""
        self.engine_model = engine_model
        self.prefix_sharing = prefix_sharing
        self.one_call = one_call
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.dedup = dedup
        self.lookup_tokens = lookup_tokens
        self.window_policy = window_policy or WindowPolicy()
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})

    def _result(self, key: Ask, generated: Generated, k: int | None = None):
        window, label = key
        raw = self.engine_model.decode(generated.token_ids)
        finish = generated.finish
        if k is None:
            return CountResult(label, raw, generated.logprob, generated.generated_tokens, finish, window)
        return MentionResult(label, k, raw, generated.logprob, generated.generated_tokens, finish, window)

    def _count_value(self, key: Ask, generated: Generated) -> int:
        return parse_result(self._result(key, generated), self.max_count).value

    def lookup_for(self, prefix: list[int], text: str) -> PromptLookup | None:
        """Drafts copied from the window's prompt, for mention sequences only (a count is a digit and a stop:
        nothing to copy); the same in every mode, so modes differ only in what they share."""
        return document_lookup(self.engine_model, prefix, text, self.lookup_tokens)

    def plan(self, text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> DocumentPlan:
        return DocumentPlan.of(text, schema, labels, self.window_policy, self.max_count)

    def recognize(self, text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> EngineResult:
        """A whole document: planned into windows, all windows decoded in one batch, merged."""
        started = time.perf_counter()
        plan = self.plan(text, schema, labels)
        decoded = self.decode_windows([w.text for w in plan.windows], schema, plan.labels)
        step2 = time.perf_counter()
        prediction = plan.merge(decoded.counts, decoded.mentions, self.dedup)
        finished = time.perf_counter()
        stats = decoded.stats
        return EngineResult(
            prediction,
            decoded.counts,
            decoded.mentions,
            finished - started,
            {
                "count": decoded.count_step_s - started,
                "mention": step2 - decoded.count_step_s,
                "aggregate": finished - step2,
            },
            stats.forward_calls,
            stats.prefill_tokens,
            stats.drafted_tokens,
            stats.accepted_tokens,
        )

    def decode_windows(self, texts: Sequence[str], schema: LabelSchema, labels: Sequence[str]) -> WindowsDecoded:
        """Every count and mention sequence of the windows `texts` (window i of the results is texts[i])."""
        if not texts:
            return WindowsDecoded([], [], time.perf_counter(), DecodeStats())
        labels = list(labels)
        template = template_for(schema.language)
        stats = DecodeStats()
        prefixes = [self.engine_model.encode(template.shared_prefix(text), special=True) for text in texts]
        label_ids = {
            label: self.engine_model.encode(template.label_branch(schema.prompt_word(label))) for label in labels
        }
        lookups = [self.lookup_for(prefix, text) for prefix, text in zip(prefixes, texts)]
        if not self.prefix_sharing:
            steps = self._separate_steps
        else:
            steps = self._shared_steps if self.one_call else self._count_then_mention_steps
        count_generated, mention_generated, step1 = steps(prefixes, label_ids, labels, schema, stats, lookups)
        counts = [self._result((w, label), count_generated[(w, label)]) for w in range(len(texts)) for label in labels]
        mentions = [
            self._result((c.window, c.label), mention_generated[(c.window, c.label, k)], k)
            for c in counts
            for k in range(1, parse_result(c, self.max_count).value + 1)
        ]
        return WindowsDecoded(counts, mentions, step1, stats)

    def _mention_asks(self, label: str, schema: LabelSchema, count: int) -> list[tuple[tuple[str, int], list[int]]]:
        """The step-2 branches of one label (after the shared prefix): ((label, k), token ids), k = 1..count."""
        template = template_for(schema.language)
        branch = template.label_branch(schema.prompt_word(label))
        return [
            ((label, k), self.engine_model.encode(branch + template.mention_suffix(count, k)))
            for k in range(1, count + 1)
        ]

    def _separate_steps(self, prefixes, label_ids, labels, schema, stats, lookups):
        """Without prefix sharing (the paper's batch mode): every count prompt of every window in one batch,
        decoded to its stop token; then every mention prompt, each encoded on its own, in one batch."""
        asks = [(w, label) for w in range(len(prefixes)) for label in labels]
        generated = greedy_decode(
            self.engine_model.model,
            [prefixes[w] + label_ids[label] for w, label in asks],
            stop_ids=self.stop_ids,
            max_new_tokens=COUNT_MAX_NEW_TOKENS,
            pad_id=self.engine_model.pad_id,
            stats=stats,
        )
        counts = dict(zip(asks, generated))
        step1 = time.perf_counter()
        keys, prompts, prompt_lookups = [], [], []
        for (w, label), g in counts.items():
            for (_, k), ids in self._mention_asks(label, schema, self._count_value((w, label), g)):
                keys.append((w, label, k))
                prompts.append(prefixes[w] + ids)
                prompt_lookups.append(lookups[w])
        mentions = (
            greedy_decode(
                self.engine_model.model,
                prompts,
                stop_ids=self.stop_ids,
                max_new_tokens=self.max_mention_tokens,
                pad_id=self.engine_model.pad_id,
                stats=stats,
                lookup=prompt_lookups,
            )
            if prompts
            else []
        )
        return counts, dict(zip(keys, mentions)), step1

    def _mentions_on_caches(self, counts: dict[Ask, Generated], prefixes, cache_of, schema, stats, lookups):
        """Step 2 of decoded counts: every (window, label, k) branch of every window in one batch, each read on
        its window's cache (`cache_of(w)`, asked only for windows with mentions)."""
        asks: dict[int, list[tuple[MentionKey, list[int]]]] = {}
        for (w, label), g in counts.items():
            for (_, k), ids in self._mention_asks(label, schema, self._count_value((w, label), g)):
                asks.setdefault(w, []).append(((w, label, k), ids))
        windows = sorted(asks)
        generated = decode_on_caches(
            self.engine_model.model,
            [(len(prefixes[w]), cache_of(w), [ids for _, ids in asks[w]]) for w in windows],
            stop_ids=self.stop_ids,
            max_new_tokens=self.max_mention_tokens,
            pad_id=self.engine_model.pad_id,
            stats=stats,
            lookup=[lookups[w] for w in windows],
        )
        return {key: g for w, row in zip(windows, generated) for (key, _), g in zip(asks[w], row)}

    def _count_then_mention_steps(self, prefixes, label_ids, labels, schema, stats, lookups):
        """With prefix sharing, as two separate calls: every window and its count branches in one forward (a row
        each), the counts decoded to their stop token; then each window's mention branches on its cache."""
        generated, forest = decode_forest(
            self.engine_model.model,
            prefixes,
            [[label_ids[label] for label in labels]] * len(prefixes),
            stop_ids=self.stop_ids,
            max_new_tokens=COUNT_MAX_NEW_TOKENS,
            pad_id=self.engine_model.pad_id,
            stats=stats,
        )
        counts = {(w, label): g for w, row in enumerate(generated) for label, g in zip(labels, row)}
        step1 = time.perf_counter()
        return counts, self._mentions_on_caches(counts, prefixes, forest.prefix_cache, schema, stats, lookups), step1

    def _shared_steps(self, prefixes, label_ids, labels, schema, stats, lookups):
        """With prefix sharing: every window and its count branches in one forward (a tree each); step 2 continues
        each label's count branch, so neither the window nor the label is read again.

        A count is almost always one digit and a stop token. The stop is not decoded in a forward of its own:
        the forward that starts step 2 reads the digit at the head of each label's continuations (for a count of
        0, a continuation that only checks) and confirms that the model's next token there is a stop, the token
        greedy decoding would take. A count it cannot confirm (10 or more, not a digit) is decoded in full and
        its mentions asked in a second round. Every count and mention equals plain greedy decoding of its prompt
        (tests/test_engine.py); a document takes one forward fewer.
        """
        first, forest = read_forest(
            self.engine_model.model,
            prefixes,
            [[label_ids[label] for label in labels]] * len(prefixes),
            stop_ids=self.stop_ids,
            pad_id=self.engine_model.pad_id,
            stats=stats,
        )
        step1 = time.perf_counter()
        asked = [(w, label) for w in range(len(prefixes)) for label in labels]  # the forest's branches, in order
        parents, suffixes, check_at, asks = [], [], [], []  # asks: (window, label, k); k None: a check only
        assumed: dict[Ask, Generated] = {}
        for branch, ((w, label), generated) in enumerate(zip(asked, first)):
            digit = self._single_digit(generated)
            if digit is None:
                continue
            branch_ids = label_ids[label]
            if digit == 0:
                continuations = [((w, label, None), generated.token_ids)]
            else:
                continuations = []
                for (_, k), ids in self._mention_asks(label, schema, digit):
                    if ids[: len(branch_ids) + 1] != branch_ids + generated.token_ids:
                        break  # the digit is not a token of its own after the branch: take the general path
                    continuations.append(((w, label, k), ids[len(branch_ids) :]))
                if len(continuations) < digit:
                    continue
            assumed[(w, label)] = generated
            for i, (ask, suffix) in enumerate(continuations):
                parents.append(branch)
                suffixes.append(suffix)
                check_at.append(0 if i == 0 else None)
                asks.append(ask)
        confirmed: set[Ask] = set()

        def decide(checks):
            for ask, at, check in zip(asks, check_at, checks):
                if at is not None and check[0] in self.stop_ids:
                    confirmed.add(ask[:2])
            return [ask[2] is not None and ask[:2] in confirmed for ask in asks]

        decoded, checks = continue_forest(
            self.engine_model.model,
            forest,
            parents,
            suffixes,
            check_at,
            decide=decide,
            stop_ids=self.stop_ids,
            max_new_tokens=self.max_mention_tokens,
            pad_id=self.engine_model.pad_id,
            stats=stats,
            lookup=lookups,
        )
        counts: dict[Ask, Generated] = {}
        mentions: dict[MentionKey, Generated] = {}
        for ask, at, check, generated in zip(asks, check_at, checks, decoded):
            key = ask[:2]
            if at is not None and key in confirmed:
                g = assumed[key]
                counts[key] = Generated(list(g.token_ids), list(g.logprobs), FinishReason.STOP, check[0], check[1])
            if generated is not None:
                mentions[ask] = generated
        for key, generated in zip(asked, first):
            if generated.finish is FinishReason.STOP:  # the count ended at once (empty): nothing to confirm
                counts[key] = generated
        pending = [key for key in asked if key not in counts]
        if pending:  # counts not confirmed: decoded in full, all windows in one batch, then their mentions
            windows = sorted({w for w, _ in pending})
            caches = {w: forest.prefix_cache(w) for w in windows}
            of_window = {w: [label for v, label in pending if v == w] for w in windows}
            full = decode_on_caches(
                self.engine_model.model,
                [(len(prefixes[w]), caches[w], [label_ids[label] for label in of_window[w]]) for w in windows],
                stop_ids=self.stop_ids,
                max_new_tokens=COUNT_MAX_NEW_TOKENS,
                pad_id=self.engine_model.pad_id,
                stats=stats,
            )
            late = {(w, label): g for w, row in zip(windows, full) for label, g in zip(of_window[w], row)}
            counts.update(late)
            mentions.update(self._mentions_on_caches(late, prefixes, caches.__getitem__, schema, stats, lookups))
        return counts, mentions, step1

    def _single_digit(self, generated: Generated) -> int | None:
        """The count a first token would give if the count stopped right after it, or None (stopped, or not a
        digit token)."""
        if generated.finish is FinishReason.STOP or len(generated.token_ids) != 1:
            return None
        text = self.engine_model.decode(generated.token_ids)
        if len(text) != 1 or not (text.isascii() and text.isdigit()) or int(text) > self.max_count:
            return None  # capped counts take the general path
        return int(text)
