"""Scoring predictions against gold: de-duplication by policy, then the set- or span-based metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .dedup import DedupPolicy, dedup_mask
from .document import Document
from .grounding import ground
from .metrics import Scores, Span, UnplacedSpan, set_scores, span_scores


@dataclass(frozen=True, slots=True)
class ScoredMention:
    label: str
    text: str
    probability: float | None = None  # None: the method gives none (AutoReg_Struct, gold used as predictions)
    start: int | None = None
    end: int | None = None


@dataclass
class PredictionRecord:
    """One document's predictions, as read from a results file; `gold` where the file carries it."""

    id: str
    text: str
    mentions: list[ScoredMention]  # label-major prediction order, as the official dedup expects
    gold: dict[str, list[str]] | None = None
    labels: list[str] = field(default_factory=list)  # label keys present in the file, even if empty
    latency_s: float | None = None
    language: str = "en"

    def deduplicated(self, policy: DedupPolicy | str) -> list[ScoredMention]:
        keep = dedup_mask([(m.label, m.text, m.probability) for m in self.mentions], policy)
        return [m for m, k in zip(self.mentions, keep) if k]


def _predicted_sets(record: PredictionRecord, mentions: list[ScoredMention]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {label: [] for label in record.labels}
    for mention in mentions:
        out.setdefault(mention.label, []).append(mention.text)
    return out


def pair_with_gold(records: Sequence[PredictionRecord], gold: Sequence[Document]) -> list[Document]:
    """The gold document of each record: by id where every id matches, else by position (texts must agree)."""
    by_id = {d.id: d for d in gold}
    if all(r.id in by_id for r in records):
        return [by_id[r.id] for r in records]
    if len(records) != len(gold):
        raise ValueError(
            f"cannot pair {len(records)} predictions with {len(gold)} gold documents: ids differ and counts differ"
        )
    for position, (record, document) in enumerate(zip(records, gold)):
        if record.text and record.text != document.text:
            raise ValueError(
                f"prediction {position} (id {record.id!r}) has another text than gold document {document.id!r}"
            )
    return list(gold)


def score_records(
    records: Sequence[PredictionRecord],
    gold: Sequence[Document] | None = None,
    dedup: DedupPolicy | str = DedupPolicy.KEEP_MAX,
    metric: str = "set",
) -> Scores:
    if gold is None and any(r.gold is None for r in records):
        raise ValueError("these predictions carry no gold; pass a gold file")
    documents = pair_with_gold(records, gold) if gold is not None else None
    kept = [r.deduplicated(dedup) for r in records]
    if metric == "set":
        gold_sets = (
            [d.mentions_by_label() for d in documents] if documents is not None else [r.gold or {} for r in records]
        )
        return set_scores((_predicted_sets(r, m), g) for r, m, g in zip(records, kept, gold_sets))
    if metric == "span":
        if documents is None:
            raise ValueError("the span metric needs gold character offsets; pass a gold file")
        pairs: list[tuple[list[Span | UnplacedSpan], list[Span]]] = []
        for _record, mentions, document in zip(records, kept, documents):
            spans = ground(document.text, [(m.label, m.text) for m in mentions], document.language)
            predicted: list[Span | UnplacedSpan] = []
            for m, span in zip(mentions, spans):
                if m.start is not None and m.end is not None:
                    predicted.append((m.start, m.end, m.label))
                elif span is not None:
                    predicted.append((span[0], span[1], m.label))
                else:
                    predicted.append((None, None, m.label))
            pairs.append((predicted, [(e.start, e.end, e.label) for e in document.entities]))
        return span_scores(pairs)
    raise ValueError(f"unknown metric {metric!r}; expected 'set' or 'span'")
