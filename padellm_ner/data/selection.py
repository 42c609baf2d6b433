"""Which documents of a corpus an evaluation or benchmark reads: the first N, or a seeded random sample.

Corpora are ordered by source document, so their first sentences are not a sample of the whole: the first 300
CoNLL-2003 test sentences are mostly sports line-ups, where 17 % of the mentions sit in (sentence, label) groups
of 7 or more, against 4 % over the whole test set. A seeded uniform sample, kept in corpus order, measures the
corpus; the first N reproduce earlier reports.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def select_documents(
    documents: Sequence[T], limit: int | None = None, sample: int | None = None, seed: int = 0
) -> list[T]:
    """The first `limit` documents, or `sample` documents drawn uniformly without replacement (seeded, in
    corpus order); all of them when neither is given."""
    if limit is not None and sample is not None:
        raise ValueError("give either a limit (the first N documents) or a sample size, not both")
    if sample is not None:
        if sample <= 0:
            raise ValueError(f"sample size must be positive, got {sample}")
        if sample >= len(documents):
            return list(documents)
        return [documents[i] for i in sorted(random.Random(seed).sample(range(len(documents)), sample))]
    if limit is not None and limit <= 0:
        raise ValueError(f"limit must be positive, got {limit}")
    return list(documents[:limit]) if limit else list(documents)


def selection_label(limit: int | None, sample: int | None, seed: int, total: int) -> dict:
    """How the documents were chosen, for a report."""
    if sample is not None:
        return {"how": "sample", "size": min(sample, total), "seed": seed, "of": total}
    return {"how": "first", "size": min(limit, total) if limit else total, "of": total}
