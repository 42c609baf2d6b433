"""How far a micro-F1 can be trusted: bootstrap intervals over documents, alone or for a paired comparison.

A test set is one sample of documents; a score 0.04 under a bar, or 0.2 under another method on the same
sentences, says little without the spread that resampling the documents gives. Documents are resampled with
replacement (their (tp, fp, fn) summed, micro-F1 = 2tp / (2tp + fp + fn)) and the percentile interval is taken
(Efron and Tibshirani, 1993). Two systems on the same documents are compared with the paired bootstrap
(Koehn, 2004): each resample draws the same documents for both, so what the documents have in common cancels
out. Per-document counts come from `Scores.per_document` (padellm_ner.core.metrics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

Counts = tuple[int, int, int]  # tp, fp, fn of one document
_CHUNK = 200  # resamples drawn at once: bounds memory at _CHUNK x documents indices


@dataclass(frozen=True)
class Interval:
    estimate: float  # the statistic on the documents as they are
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PairedComparison:
    difference: Interval  # micro-F1 of A minus micro-F1 of B
    a_better_share: float  # share of resamples in which A scores higher than B

    def to_json(self) -> dict:
        return {"difference": self.difference.to_json(), "a_better_share": self.a_better_share}


def _micro_f1(sums: np.ndarray) -> np.ndarray:
    """Micro-F1 of summed (tp, fp, fn) rows; 0 where nothing was predicted or expected (as LabelScore.f1)."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(denominator.shape), where=denominator > 0)


def _check(documents: int, resamples: int, confidence: float) -> None:
    if documents == 0:
        raise ValueError("a bootstrap needs at least one document")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")


def _resampled(arrays: Sequence[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """Micro-F1 of each array over the same `resamples` draws of document indices: [resamples] per array."""
    rng = np.random.default_rng(seed)
    documents = arrays[0].shape[0]
    out: list[list[np.ndarray]] = [[] for _ in arrays]
    for start in range(0, resamples, _CHUNK):
        draws = rng.integers(0, documents, size=(min(_CHUNK, resamples - start), documents))
        for i, array in enumerate(arrays):
            out[i].append(_micro_f1(array[draws].sum(axis=1)))
    return [np.concatenate(parts) for parts in out]


def _interval(estimate: float, values: np.ndarray, confidence: float, resamples: int, seed: int) -> Interval:
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(estimate), float(low), float(high), confidence, resamples, seed)


def micro_f1_interval(
    per_document: Sequence[Counts], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """The percentile bootstrap interval of micro-F1 over documents."""
    _check(len(per_document), resamples, confidence)
    counts = np.asarray(per_document, dtype=np.int64).reshape(-1, 3)
    (values,) = _resampled([counts], resamples, seed)
    return _interval(float(_micro_f1(counts.sum(axis=0))), values, confidence, resamples, seed)


def paired_comparison(
    a: Sequence[Counts], b: Sequence[Counts], resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedComparison:
    """A against B on the same documents, in the same order: the interval of their micro-F1 difference."""
    if len(a) != len(b):
        raise ValueError(f"a paired comparison needs the same documents: {len(a)} against {len(b)}")
    _check(len(a), resamples, confidence)
    counts_a = np.asarray(a, dtype=np.int64).reshape(-1, 3)
    counts_b = np.asarray(b, dtype=np.int64).reshape(-1, 3)
    values_a, values_b = _resampled([counts_a, counts_b], resamples, seed)
    estimate = _micro_f1(counts_a.sum(axis=0)) - _micro_f1(counts_b.sum(axis=0))
    difference = _interval(estimate, values_a - values_b, confidence, resamples, seed)
    return PairedComparison(difference, float(np.mean(values_a > values_b)))
