"""The embedded PaDeLLM engine: two batched decoding steps per document, one shared prefix.

Step 1 decodes the count of every label in one batch; step 2 decodes every (label, k) mention in one batch.
With prefix sharing (default) the document ("text:\\n{text}\\nentity type:\\n") is encoded once, in the same
forward as the step-1 label branches, and its KV cache continues into every label and mention branch;
finished sequences leave the batch. Without it, every
prompt is encoded on its own (the paper's batch mode). Parsing, de-duplication and grounding come from
`padellm_ner.core.aggregate`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

from padellm_ner.core import (
    DEFAULT_MAX_COUNT, CountResult, DedupPolicy, DocumentPrediction, LabelSchema, MentionResult, aggregate,
    parse_counts, template_for,
)

from .decoder import DecodeStats, Generated, decode_tree, greedy_decode
from .loading import EngineModel

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
        max_mention_tokens: int = 48, dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX,
    ):
        self.m = engine_model
        self.prefix_sharing = prefix_sharing
        self.max_count = max_count
        self.max_mention_tokens = max_mention_tokens
        self.dedup = dedup
        self.stop_ids = frozenset({engine_model.eos_id, *engine_model.newline_ids})

    def _result(self, label: str, generated: Generated, k: int | None = None):
        raw = self.m.decode(generated.token_ids)
        if k is None:
            return CountResult(label, raw, generated.logprob, generated.generated_tokens)
        return MentionResult(label, k, raw, generated.logprob, generated.generated_tokens)

    def _decode(self, prefix: list[int], cache, branches: list[list[int]], max_new: int, stats: DecodeStats):
        if self.prefix_sharing:
            return greedy_decode(self.m.model, branches, prefix_ids=prefix, prefix_cache=cache,
                                 stop_ids=self.stop_ids, max_new_tokens=max_new, pad_id=self.m.pad_id, stats=stats)
        return greedy_decode(self.m.model, [prefix + b for b in branches], stop_ids=self.stop_ids,
                             max_new_tokens=max_new, pad_id=self.m.pad_id, stats=stats)

    def recognize(self, text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> EngineResult:
        labels = list(labels or schema.labels)
        template = template_for(schema.language)
        stats = DecodeStats()
        started = time.perf_counter()
        prefix = self.m.encode(template.shared_prefix(text), special=True)
        # Step 1: the count of every label (with prefix sharing: read together with the document).
        branches = [self.m.encode(template.label_branch(schema.prompt_word(label))) for label in labels]
        cache = None
        if self.prefix_sharing:
            generated, cache = decode_tree(self.m.model, prefix, branches, stop_ids=self.stop_ids,
                                           max_new_tokens=COUNT_MAX_NEW_TOKENS, stats=stats)
        else:
            generated = self._decode(prefix, None, branches, COUNT_MAX_NEW_TOKENS, stats)
        counts = [self._result(label, g) for label, g in zip(labels, generated)]
        step1 = time.perf_counter()
        # Step 2: the k-th mention of every label, k = 1..count.
        parsed = parse_counts(counts, self.max_count)
        asks = [(label, k) for label in labels for k in range(1, parsed[label].value + 1)]
        branches = [
            self.m.encode(template.label_branch(schema.prompt_word(label)) + template.mention_suffix(parsed[label].value, k))
            for label, k in asks
        ]
        generated = self._decode(prefix, cache, branches, self.max_mention_tokens, stats)
        mentions = [self._result(label, g, k) for (label, k), g in zip(asks, generated)]
        step2 = time.perf_counter()
        prediction = aggregate(text, labels, counts, mentions, language=schema.language, dedup=self.dedup,
                               max_count=self.max_count)
        finished = time.perf_counter()
        return EngineResult(
            prediction, counts, mentions, finished - started,
            {"count": step1 - started, "mention": step2 - step1, "aggregate": finished - step2},
            stats.forward_calls, stats.prefill_tokens,
        )
