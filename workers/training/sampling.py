"""Which documents an epoch holds: the corpus, with documents that list many mentions of one label repeated.

PaDeLLM asks for the k-th mention of a label on its own, so a long list (a sports line-up: eleven PER) is a
count to get right and then eleven positions to index; the small model under-counts such lists and repeats
names at large k. Train has few of them (1 % of its mentions sit in groups of 7 or more, test 4 %), so an
epoch can repeat the documents that hold a group of at least `min_mentions` mentions. The repeats are
deterministic (the same list every epoch and on resume); packing shuffles them apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from padellm_ner.core import Document


@dataclass(frozen=True)
class Oversampling:
    min_mentions: int = 0  # 0: off
    times: int = 1  # how often a selected document appears per epoch

    def __post_init__(self) -> None:
        if self.min_mentions < 0 or self.times < 1:
            raise ValueError(f"oversampling needs min_mentions >= 0 and times >= 1, got {self}")

    @property
    def active(self) -> bool:
        return self.min_mentions > 0 and self.times > 1


def largest_group(document: Document) -> int:
    """The most mentions any one label has in the document, counted as the count target counts them (a
    repeated string twice)."""
    return max(Counter(e.label for e in document.entities).values(), default=0)


def epoch_documents(documents: Sequence[Document], oversampling: Oversampling) -> tuple[list[Document], int]:
    """The documents of one epoch, and how many of the corpus's documents were repeated."""
    if not oversampling.active:
        return list(documents), 0
    selected = [d for d in documents if largest_group(d) >= oversampling.min_mentions]
    return list(documents) + selected * (oversampling.times - 1), len(selected)
