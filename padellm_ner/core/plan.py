"""One document's PaDeLLM work, planned in one place: windows, count asks, mention asks, and the merge.

    document --split_windows--> windows
    step 1: one CountAsk per (window, label)
    step 2: one MentionAsk per (window, label, k), k = 1..the window's parsed count of that label
    merge:  per window the paper's rules (parse, de-duplicate across labels by probability, ground), then the
            entities in document offsets, counts summed per label

Every executor — the embedded engine, the orchestrator's multi and batch modes, the TGI backend — asks what this
plan asks and hands the decoded sequences back to `merge`, so one document gives one prediction whichever path
decodes it. A window's asks are independent of the other windows': executors may run them in any order, and may
ask a label's mentions as soon as that label's count is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .aggregate import (
    CountResult,
    DocumentPrediction,
    LabelCount,
    MentionResult,
    PredictedMention,
    aggregate,
    parse_result,
)
from .dedup import DedupPolicy
from .parsing import DEFAULT_MAX_COUNT, CountStatus, ParsedCount
from .schemas import LabelSchema
from .segment import Window, WindowPolicy, split_windows


@dataclass(frozen=True, slots=True)
class CountAsk:
    window: int
    label: str


@dataclass(frozen=True, slots=True)
class MentionAsk:
    window: int
    label: str
    count: int
    k: int


@dataclass(frozen=True)
class DocumentPlan:
    text: str
    schema: LabelSchema
    labels: tuple[str, ...]
    windows: tuple[Window, ...]
    max_count: int = DEFAULT_MAX_COUNT

    @classmethod
    def of(
        cls,
        text: str,
        schema: LabelSchema,
        labels: Sequence[str] | None = None,
        policy: WindowPolicy | None = None,
        max_count: int = DEFAULT_MAX_COUNT,
    ) -> DocumentPlan:
        return cls(
            text, schema, tuple(labels or schema.labels), tuple(split_windows(text, schema.language, policy)), max_count
        )

    @classmethod
    def one_window(
        cls, text: str, schema: LabelSchema, labels: Sequence[str] | None = None, max_count: int = DEFAULT_MAX_COUNT
    ) -> DocumentPlan:
        """The plan of a text that is already one window (what a worker call carries): not split again."""
        return cls(text, schema, tuple(labels or schema.labels), (Window.whole(text),), max_count)

    @property
    def language(self) -> str:
        return self.schema.language

    def count_asks(self) -> list[CountAsk]:
        """Step 1: every label of every window, windows in order, labels in the asked order."""
        return [CountAsk(w.index, label) for w in self.windows for label in self.labels]

    def parse(self, count: CountResult) -> ParsedCount:
        """The one parse of a count that decides step 2 (capped at max_count; cut at its limit: TRUNCATED)."""
        return parse_result(count, self.max_count)

    def mention_asks(self, count: CountResult) -> list[MentionAsk]:
        """Step 2 of one (window, label), from its decoded count: k = 1..count."""
        n = self.parse(count).value
        return [MentionAsk(count.window, count.label, n, k) for k in range(1, n + 1)]

    def all_mention_asks(self, counts: Iterable[CountResult]) -> list[MentionAsk]:
        return [ask for count in counts for ask in self.mention_asks(count)]

    def merge(
        self,
        counts: Sequence[CountResult],
        mentions: Sequence[MentionResult],
        dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX,
    ) -> DocumentPrediction:
        counts_of: dict[int, list[CountResult]] = {}
        mentions_of: dict[int, list[MentionResult]] = {}
        for c in counts:
            counts_of.setdefault(c.window, []).append(c)
        for m in mentions:
            mentions_of.setdefault(m.window, []).append(m)
        unknown = (set(counts_of) | set(mentions_of)) - {w.index for w in self.windows}
        if unknown:
            raise ValueError(f"results for windows {sorted(unknown)} of a plan with {len(self.windows)} windows")
        per_window = [
            aggregate(
                w.text,
                self.labels,
                counts_of.get(w.index, []),
                mentions_of.get(w.index, []),
                language=self.language,
                dedup=dedup,
                max_count=self.max_count,
            )
            for w in self.windows
        ]
        return merge_windows(self.text, self.labels, self.windows, per_window)


def _in_document(window: Window, mention: PredictedMention) -> PredictedMention:
    start, end = (
        (None, None)
        if mention.start is None or mention.end is None
        else window.document_span(mention.start, mention.end)
    )
    return PredictedMention(mention.label, mention.k, mention.text, mention.probability, start, end, window.index)


def merge_windows(
    text: str, labels: Sequence[str], windows: Sequence[Window], predictions: Sequence[DocumentPrediction]
) -> DocumentPrediction:
    """Window predictions as one document prediction: every mention in document offsets (in window order), each
    label's count summed over the windows (its status the first one that is not OK, its probability the least
    sure window's), and what each window set aside, together."""
    counts = []
    for label in labels:
        of_label = [c for p in predictions for c in p.counts if c.label == label]
        if not of_label:
            continue
        status = next((c.status for c in of_label if c.status is not CountStatus.OK), CountStatus.OK)
        counts.append(
            LabelCount(
                label,
                sum(c.count for c in of_label),
                status,
                min(c.probability for c in of_label),
                " | ".join(c.raw for c in of_label),
            )
        )
    return DocumentPrediction(
        text,
        tuple(_in_document(w, m) for w, p in zip(windows, predictions) for m in p.mentions),
        tuple(counts),
        tuple(m for p in predictions for m in p.removed_by_dedup),
        sum(p.empty_mentions for p in predictions),
        tuple(m for p in predictions for m in p.absent),
        tuple(m for p in predictions for m in p.truncated),
        windows=len(windows),
    )
