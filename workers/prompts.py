"""The two prompt batches of PaDeLLM decoding for one document, built from the core's templates.

Step 1 asks every label for its count; step 2 asks every (label, k) with k = 1..count for its mention.
Backends (the embedded engine, TGI) decode these batches; the core then aggregates what they return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from padellm_ner.core import LabelSchema, template_for


@dataclass(frozen=True, slots=True)
class CountRequest:
    label: str
    prompt: str


@dataclass(frozen=True, slots=True)
class MentionRequest:
    label: str
    count: int
    k: int
    prompt: str


def count_requests(text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> list[CountRequest]:
    template = template_for(schema.language)
    return [CountRequest(label, template.count_prompt(text, schema.prompt_word(label))) for label in labels or schema.labels]


def mention_requests(text: str, schema: LabelSchema, counts: Mapping[str, int]) -> list[MentionRequest]:
    """One request per (label, k), labels in the schema's order; labels with a zero count ask nothing."""
    template = template_for(schema.language)
    return [
        MentionRequest(label, counts[label], k, template.mention_prompt(text, schema.prompt_word(label), counts[label], k))
        for label in schema.labels
        if counts.get(label, 0) > 0
        for k in range(1, counts[label] + 1)
    ]
