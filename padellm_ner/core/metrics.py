"""Metrics: the paper's set-based F1 and a strict span-based F1, each with a per-label breakdown.

Set-based (official `eval/eval_dedu.py`, the metric behind the paper's numbers): per document and label,
predicted and gold mention strings each become a set; TP/FP/FN are counted on those sets and summed over
the corpus. Labels of a document are the union of the labels present in its prediction and its gold, and the
macro scores average over every label seen anywhere, exactly as the official scorer does.

Span-based (strict): per document, sets of (start, end, label) with character offsets; a prediction without
a span can never be a true positive.

Set scores are also broken down by group size: the number of distinct gold mentions a label has in a
document (0, 1, 2, 3, 4, 5+). PaDeLLM counts a label's mentions and then asks for each by its index, so its
recall on long lists (sports line-ups) is where it differs most from autoregressive output.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class LabelScore:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def counts(self) -> tuple[int, int, int]:
        return self.tp, self.fp, self.fn

    def to_json(self) -> dict:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "support": self.tp + self.fn,
        }


@dataclass
class Scores:
    metric: str
    total: LabelScore = field(default_factory=LabelScore)
    per_label: dict[str, LabelScore] = field(default_factory=dict)
    by_group_size: dict[str, LabelScore] = field(default_factory=dict)  # set metric only; see the module doc
    per_document: list[tuple[int, int, int]] = field(default_factory=list)  # (tp, fp, fn) of each, in order

    def close_document(self, before: tuple[int, int, int]) -> None:
        """Record what the document just added (the totals were `before` it), for bootstrap intervals."""
        now = self.total.counts()
        self.per_document.append((now[0] - before[0], now[1] - before[1], now[2] - before[2]))

    @property
    def documents(self) -> int:
        return len(self.per_document)

    @property
    def micro_f1(self) -> float:
        return self.total.f1

    @property
    def macro_f1(self) -> float:
        return _mean([s.f1 for s in self.per_label.values()])

    @property
    def macro_precision(self) -> float:
        return _mean([s.precision for s in self.per_label.values()])

    @property
    def macro_recall(self) -> float:
        return _mean([s.recall for s in self.per_label.values()])

    def add(self, label: str, predicted: set[Hashable], gold: set[Hashable], by_group: bool = False) -> None:
        """Count one (document, label) pair under its label and the total, and with `by_group` also under the
        size of its gold group."""
        tp = len(predicted & gold)
        fp, fn = len(predicted) - tp, len(gold) - tp
        targets = [self.per_label.setdefault(label, LabelScore()), self.total]
        if by_group:
            size = len(gold)
            targets.append(
                self.by_group_size.setdefault(str(size) if size < GROUP_CAP else f"{GROUP_CAP}+", LabelScore())
            )
        for s in targets:
            s.tp += tp
            s.fp += fp
            s.fn += fn

    def to_json(self) -> dict:
        return {
            "metric": self.metric,
            "documents": self.documents,
            "micro_f1": self.micro_f1,
            "macro_f1": self.macro_f1,
            "precision": self.total.precision,
            "recall": self.total.recall,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "tp": self.total.tp,
            "fp": self.total.fp,
            "fn": self.total.fn,
            "per_label": {label: self.per_label[label].to_json() for label in sorted(self.per_label)},
            **(
                {"by_gold_group_size": {size: self.by_group_size[size].to_json() for size in _group_order(self)}}
                if self.by_group_size
                else {}
            ),
        }


GROUP_CAP = 5  # groups of this many gold mentions or more share one bucket


def _group_order(scores: Scores) -> list[str]:
    return sorted(scores.by_group_size, key=lambda size: int(size.rstrip("+")))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def set_scores(pairs: Iterable[tuple[Mapping[str, Iterable[str]], Mapping[str, Iterable[str]]]]) -> Scores:
    """Set-based scores over (predicted, gold) pairs of {label: mention strings} per document."""
    scores = Scores("set")
    for predicted, gold in pairs:
        before = scores.total.counts()
        for label in set(predicted) | set(gold):
            scores.add(label, set(predicted.get(label, ())), set(gold.get(label, ())), by_group=True)
        scores.close_document(before)
    return scores


Span = tuple[int, int, str]
UnplacedSpan = tuple[None, None, str]  # a prediction of a label that has no place in the text


def span_scores(pairs: Iterable[tuple[Iterable[Span | UnplacedSpan | None], Iterable[Span]]]) -> Scores:
    """Strict span scores over (predicted spans, gold spans) per document; None marks an unplaced prediction.

    An unplaced prediction is a false positive of its label; pass it as (None, None, label) to keep its label,
    or as None when the label is unknown (counted under the label "<none>").
    """
    scores = Scores("span")
    for predicted, gold in pairs:
        before = scores.total.counts()
        predicted_spans: dict[str, set] = {}
        unplaced: dict[str, int] = {}
        for span in predicted:
            if span is None or span[0] is None:
                label = "<none>" if span is None else span[2]
                unplaced[label] = unplaced.get(label, 0) + 1
            else:
                predicted_spans.setdefault(span[2], set()).add(span)
        gold_spans: dict[str, set] = {}
        for span in gold:
            gold_spans.setdefault(span[2], set()).add(span)
        for label in set(predicted_spans) | set(gold_spans) | set(unplaced):
            scores.add(label, predicted_spans.get(label, set()), gold_spans.get(label, set()))
            if unplaced.get(label):
                score = scores.per_label[label]
                score.fp += unplaced[label]
                scores.total.fp += unplaced[label]
        scores.close_document(before)
    return scores


def scores_table(scores: Scores) -> str:
    """A readable table of a score report."""
    rows = [(label, s) for label, s in sorted(scores.per_label.items())]
    width = max([len("label"), len("micro"), *(len(label) for label, _ in rows)])
    lines = [f"{'label':<{width}}  {'P':>7} {'R':>7} {'F1':>7} {'TP':>7} {'FP':>7} {'FN':>7}"]
    for label, s in rows + [("micro", scores.total)]:
        lines.append(
            f"{label:<{width}}  {s.precision * 100:7.2f} {s.recall * 100:7.2f} {s.f1 * 100:7.2f} "
            f"{s.tp:7d} {s.fp:7d} {s.fn:7d}"
        )
    lines.append(
        f"{'macro':<{width}}  {scores.macro_precision * 100:7.2f} {scores.macro_recall * 100:7.2f} "
        f"{scores.macro_f1 * 100:7.2f}"
    )
    if scores.by_group_size:
        lines.append(
            "recall by gold mentions of a label in a document: "
            + ", ".join(
                f"{size}: {scores.by_group_size[size].recall * 100:.1f} ({scores.by_group_size[size].fn} missed)"
                for size in _group_order(scores)
                if size != "0"
            )
        )
    lines.append(f"({scores.metric}-based, {scores.documents} documents)")
    return "\n".join(lines)
