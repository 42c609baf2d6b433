"""De-duplication of mentions across labels by probability (paper §3.3; official `eval/dedu.py`).

Within one document, a mention string predicted under more than one label is a duplicate.
- `keep-max` (the paper's): keep it only under the label whose instance has the highest probability.
- `reverse` (the paper's ablation, Table 6): remove it from that label and keep it under the others.
- `none`: keep everything.
Ties go to the label seen first (the official scorer's `max` over labels in prediction order).
A duplicate group in which any item has no probability (None: the method gives none, as AutoReg_Struct's
one structured sequence) is left whole under every policy: there is nothing to resolve it by.
Matching is on the exact string, as in the official code.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum


class DedupPolicy(str, Enum):
    KEEP_MAX = "keep-max"
    NONE = "none"
    REVERSE = "reverse"


DEDUP_POLICIES = tuple(p.value for p in DedupPolicy)


def dedup_mask(items: Sequence[tuple[str, str, float | None]], policy: DedupPolicy | str) -> list[bool]:
    """For (label, text, probability) items in prediction order, which ones survive de-duplication."""
    policy = DedupPolicy(policy)
    keep = [True] * len(items)
    if policy is DedupPolicy.NONE:
        return keep
    by_text: dict[str, list[int]] = {}
    for index, (_, text, _) in enumerate(items):
        by_text.setdefault(text, []).append(index)
    for indices in by_text.values():
        labels = {items[i][0] for i in indices}
        if len(labels) < 2 or any(items[i][2] is None for i in indices):
            continue
        probabilities = {i: items[i][2] or 0.0 for i in indices}  # none is None here (checked above)
        best = indices[0]
        for i in indices[1:]:
            if probabilities[i] > probabilities[best]:
                best = i
        best_label = items[best][0]
        for i in indices:
            same = items[i][0] == best_label
            keep[i] = same if policy is DedupPolicy.KEEP_MAX else not same
    return keep
