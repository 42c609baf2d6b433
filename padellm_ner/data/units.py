"""The unit a corpus is evaluated in: its sentences as stored, or the documents they came from.

CoNLL-2003 stores articles as runs of sentences under `-DOCSTART-` lines (`Document.source_document`). As
documents, each run becomes one text, its sentences on lines of their own (headlines, datelines and the rows of
results tables, which make up much of the corpus, are lines in any real article), with every entity moved to its
offset in that text and the sentences' spans kept (`Document.sentences`) so that a benchmark can also read them
one by one. Records of a file without sources (a JSON-lines file of whole documents) are documents already.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from itertools import groupby

from ..core.document import Document, Entity
from ..core.schemas import CHINESE

SEPARATORS = {CHINESE: ""}  # Chinese prose runs on; others: a line break


class Unit(str, Enum):
    SENTENCE = "sentence"
    DOCUMENT = "document"


def join_sentences(sentences: Sequence[Document]) -> Document:
    """One document of consecutive sentences (all of one source), in order."""
    text, spans, entities = "", [], []
    separator = SEPARATORS.get(sentences[0].language, "\n")
    for sentence in sentences:
        if text:
            text += separator
        offset = len(text)
        spans.append((offset, offset + len(sentence.text)))
        entities += [Entity(e.start + offset, e.end + offset, e.label, e.text) for e in sentence.entities]
        text += sentence.text
    first = sentences[0]
    return Document(
        id=first.source_document or first.id,
        text=text,
        entities=tuple(entities),
        language=first.language,
        source_document=first.source_document,
        sentences=tuple(spans),
    )


def in_unit(documents: Sequence[Document], unit: Unit | str) -> list[Document]:
    """The corpus as sentences (unchanged) or as documents (runs of sentences of one source joined)."""
    if Unit(unit) is Unit.SENTENCE:
        return list(documents)
    out: list[Document] = []
    for source, group in groupby(documents, key=lambda d: d.source_document):
        run = list(group)
        out.extend([join_sentences(run)] if source is not None else run)
    return out
