"""The unit a corpus is evaluated in: its sentences as stored, or the documents they came from.

CoNLL-2003 stores articles as runs of sentences under `-DOCSTART-` lines (`Document.source_document`). As
documents, each run becomes one text, its sentences on lines of their own (headlines, datelines and the rows of
results tables, which make up much of the corpus, are lines in any real article), with every entity moved to its
offset in that text and the sentences' spans kept (`Document.sentences`) so that a benchmark can also read them
one by one. Records of a file without sources (a JSON-lines file of whole documents) are documents already.

How the sentences are joined (`Join`): each on a line of its own (as above), or run on, separated by one space
(no separator in Chinese), as text extracted from HTML or PDF often arrives: a headline, a byline, a dateline and
the first sentence with no line break between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from itertools import groupby

from ..core.document import Document, Entity
from ..core.schemas import CHINESE


class Unit(str, Enum):
    SENTENCE = "sentence"
    DOCUMENT = "document"


class Join(str, Enum):
    LINE = "line"  # a sentence per line
    SPACE = "space"  # run on: one space between sentences (none in Chinese)


# Chinese prose runs on whichever way: its sentences end with their own marks and take no space
SEPARATORS = {Join.LINE: "\n", Join.SPACE: " "}


def join_sentences(sentences: Sequence[Document], join: Join | str = Join.LINE) -> Document:
    """One document of consecutive sentences (all of one source), in order."""
    text, spans, entities = "", [], []
    separator = "" if sentences[0].language == CHINESE else SEPARATORS[Join(join)]
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


def in_unit(documents: Sequence[Document], unit: Unit | str, join: Join | str = Join.LINE) -> list[Document]:
    """The corpus as sentences (unchanged) or as documents (runs of sentences of one source joined)."""
    if Unit(unit) is Unit.SENTENCE:
        return list(documents)
    out: list[Document] = []
    for source, group in groupby(documents, key=lambda d: d.source_document):
        run = list(group)
        out.extend([join_sentences(run, join)] if source is not None else run)
    return out
