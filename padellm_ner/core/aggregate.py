"""Aggregation of per-sequence results into one prediction per document.

Step 1 yields one `CountResult` per label, step 2 one `MentionResult` per (label, k). They are parsed, freed
of strings the text does not contain, de-duplicated across labels by probability and grounded to character
spans. Backends (embedded engine, TGI) and the orchestrator all hand their raw sequences to `aggregate`, so
every path applies one set of rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from .dedup import DedupPolicy, dedup_mask
from .grounding import ground, split_absent
from .parsing import DEFAULT_MAX_COUNT, CountStatus, ParsedCount, parse_count, parse_mention


class FinishReason(str, Enum):
    """Why a sequence ended: at a stop (newline or eos), or cut at its token limit (its text is incomplete)."""

    STOP = "stop"
    LENGTH = "length"


@dataclass(frozen=True, slots=True)
class CountResult:
    """A decoded step-1 sequence (of one window of the document; 0 for a one-window text)."""

    label: str
    raw: str
    logprob: float = 0.0  # sum over the generated count tokens, eos excluded
    generated_tokens: int = 0
    finish: FinishReason = FinishReason.STOP
    window: int = 0


@dataclass(frozen=True, slots=True)
class MentionResult:
    """A decoded step-2 sequence for the k-th mention of a label (in one window of the document)."""

    label: str
    k: int
    raw: str
    logprob: float = 0.0  # sum over the generated mention tokens, eos excluded
    generated_tokens: int = 0
    finish: FinishReason = FinishReason.STOP
    window: int = 0


@dataclass(frozen=True, slots=True)
class PredictedMention:
    label: str
    k: int
    text: str
    probability: float | None  # None: the method gives none per mention (AutoReg_Struct's one sequence)
    start: int | None = None
    end: int | None = None
    window: int = 0

    @property
    def grounded(self) -> bool:
        return self.start is not None


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int
    status: CountStatus
    probability: float
    raw: str


@dataclass(frozen=True)
class DocumentPrediction:
    text: str
    mentions: tuple[PredictedMention, ...]  # survivors of de-duplication, in label then k order
    counts: tuple[LabelCount, ...]
    removed_by_dedup: tuple[PredictedMention, ...] = ()
    empty_mentions: int = 0  # step-2 outputs with no text
    absent: tuple[PredictedMention, ...] = ()  # predicted strings that do not occur in the text: not returned
    truncated: tuple[PredictedMention, ...] = ()  # mentions cut at the token limit: incomplete, not returned
    windows: int = 1  # how many windows the document was read as
    ungrounded: int = field(init=False, default=0)  # absent ones, and kept ones beyond the text's occurrences

    def __post_init__(self) -> None:
        object.__setattr__(self, "ungrounded", len(self.absent) + sum(1 for m in self.mentions if not m.grounded))

    def by_label(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for mention in self.mentions:
            out.setdefault(mention.label, []).append(mention.text)
        return out


def parse_result(
    count: CountResult, max_count: int = DEFAULT_MAX_COUNT, stop_strings: tuple[str, ...] = ()
) -> ParsedCount:
    """A step-1 sequence's count. One cut at its token limit keeps the official fallback's value (its leading
    digit) but says TRUNCATED: the caller sees that the count is not one the model finished."""
    parsed = parse_count(count.raw, max_count, stop_strings)
    if count.finish is FinishReason.LENGTH:
        return ParsedCount(parsed.value, CountStatus.TRUNCATED, parsed.raw)
    return parsed


def parse_counts(
    counts: Sequence[CountResult], max_count: int = DEFAULT_MAX_COUNT, stop_strings: tuple[str, ...] = ()
) -> dict[str, ParsedCount]:
    """The parsed count of every label of one window's step 1; step 2 then asks for k = 1..count of each."""
    return {c.label: parse_result(c, max_count, stop_strings) for c in counts}


def aggregate(
    text: str,
    labels: Sequence[str],
    counts: Sequence[CountResult],
    mentions: Sequence[MentionResult],
    *,
    language: str,
    dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX,
    max_count: int = DEFAULT_MAX_COUNT,
    stop_strings: tuple[str, ...] = (),
) -> DocumentPrediction:
    order = {label: i for i, label in enumerate(labels)}
    unknown = ({c.label for c in counts} | {m.label for m in mentions}) - set(order)
    if unknown:
        raise ValueError(f"results for labels {sorted(unknown)} that were not asked for")
    parsed = parse_counts(counts, max_count, stop_strings)
    by_label = {c.label: c for c in counts}
    label_counts = tuple(
        LabelCount(
            label,
            parsed[label].value,
            parsed[label].status,
            math.exp(by_label[label].logprob),
            by_label[label].raw,
        )
        for label in labels
        if label in parsed
    )
    candidates: list[PredictedMention] = []
    truncated: list[PredictedMention] = []
    empty = 0
    for result in sorted(mentions, key=lambda r: (order[r.label], r.k)):
        mention = parse_mention(result.raw, stop_strings)
        if mention is None:
            empty += 1
            continue
        predicted = PredictedMention(result.label, result.k, mention, math.exp(result.logprob), window=result.window)
        (truncated if result.finish is FinishReason.LENGTH else candidates).append(predicted)
    candidates, absent = split_absent(text, candidates, lambda m: m.text)
    keep = dedup_mask([(m.label, m.text, m.probability) for m in candidates], dedup)
    kept = [m for m, k in zip(candidates, keep) if k]
    removed = tuple(m for m, k in zip(candidates, keep) if not k)
    spans = ground(text, [(m.label, m.text) for m in kept], language)
    grounded = tuple(
        PredictedMention(
            m.label, m.k, m.text, m.probability, span[0] if span else None, span[1] if span else None, window=m.window
        )
        for m, span in zip(kept, spans)
    )
    return DocumentPrediction(text, grounded, label_counts, removed, empty, tuple(absent), tuple(truncated))
