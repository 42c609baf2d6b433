"""Reformulation of a labelled document into PaDeLLM training examples (paper §3.1, Fig. 1).

One example per (label, k) for k = 1..count, and one zero-count example per label without mentions.
Prompt and target are kept apart so that training can mask the loss on the prompt: the loss starts at the
count token (paper §4.4, "loss ignoring").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from .document import Document
from .schemas import LabelSchema
from .templates import template_for


@dataclass(frozen=True, slots=True)
class TrainingExample:
    document_id: str
    label: str
    count: int
    k: int  # 1..count, or 0 for a zero-count example
    mention: str | None
    prompt: str
    target: str

    def to_json(self) -> dict:
        return asdict(self)


def reformulate(document: Document, schema: LabelSchema) -> list[TrainingExample]:
    """All training examples of one document, labels in the schema's order, mentions in text order."""
    template = template_for(schema.language)
    by_label = document.mentions_by_label()
    unknown = set(by_label) - set(schema.labels)
    if unknown:
        raise ValueError(f"document {document.id!r} has labels {sorted(unknown)} outside schema {schema.name}")
    examples: list[TrainingExample] = []
    for label in schema.labels:
        prompt = template.count_prompt(document.text, schema.prompt_word(label))
        mentions = by_label.get(label, [])
        count = len(mentions)
        if count == 0:
            examples.append(TrainingExample(document.id, label, 0, 0, None, prompt, template.target(0)))
            continue
        for k, mention in enumerate(mentions, start=1):
            examples.append(
                TrainingExample(document.id, label, count, k, mention, prompt, template.target(count, k, mention))
            )
    return examples


def reformulate_all(documents: Iterable[Document], schema: LabelSchema) -> Iterator[TrainingExample]:
    for document in documents:
        yield from reformulate(document, schema)
