"""The one document type every reader yields: a text with character-offset entity spans."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    """A labelled span of a document's text. `end` is exclusive; offsets count Unicode code points."""

    start: int
    end: int
    label: str
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """One NER unit (a sentence in CoNLL terms, a message or a document elsewhere).

    `entities` are sorted by (start, end, label); nested and overlapping spans are allowed.
    `source_document` groups sentences of one original document (CoNLL `-DOCSTART-`), when known.
    `tokens` holds the character span of each token for token-based formats (None for character data).
    `sentences` holds the character span of each corpus sentence of a document joined from them (None otherwise).
    """

    id: str
    text: str
    entities: tuple[Entity, ...] = ()
    language: str = "en"
    source_document: str | None = None
    tokens: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)
    sentences: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for entity in self.entities:
            if not 0 <= entity.start < entity.end <= len(self.text):
                raise ValueError(
                    f"document {self.id!r}: entity {entity.label} [{entity.start}, {entity.end}) "
                    f"is outside the text of length {len(self.text)}"
                )
            if self.text[entity.start : entity.end] != entity.text:
                raise ValueError(
                    f"document {self.id!r}: entity {entity.label} [{entity.start}, {entity.end}) "
                    f"has text {entity.text!r} but the document holds "
                    f"{self.text[entity.start : entity.end]!r} there"
                )
        ordered = tuple(sorted(self.entities))
        if ordered != self.entities:
            object.__setattr__(self, "entities", ordered)

    def mentions_by_label(self) -> dict[str, list[str]]:
        """Mention strings per label, in order of appearance (duplicates kept)."""
        out: dict[str, list[str]] = {}
        for entity in self.entities:
            out.setdefault(entity.label, []).append(entity.text)
        return out


def make_entity(text: str, start: int, end: int, label: str) -> Entity:
    """An entity whose surface is read from the text, so it always agrees with the offsets."""
    return Entity(start=start, end=end, label=label, text=text[start:end])
