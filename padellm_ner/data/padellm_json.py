"""The official PaDeLLM-NER data files: one JSON array per line, `[sentence, [start, end, surface, label], ...]`.

English files count offsets in tokens of `sentence.split(' ')`, Chinese files in characters; `end` is
inclusive everywhere except GENIA, where it is exclusive. Which convention a file uses is decided from the
file itself: the one under which the carried surfaces agree with the sentence (overridable). Every entity is
then checked against its surface, so a wrong guess or a corrupt line fails loudly with its line number.

The English files write brackets as Penn Treebank escapes (`-LPR-`, `-RPR-` in CoNLL-2003). Every such escape
is read as its bracket, so the text is the one users send and the one other formats carry; an escape holds no
space, so the tokens stay the same tokens and token offsets stay valid.
"""

from __future__ import annotations

import json
import re

from ..core.document import Document, make_entity
from ..core.schemas import CHINESE, ENGLISH

TOKEN, CHAR = "token", "char"
PTB_ESCAPES = {
    "-LRB-": "(",
    "-RRB-": ")",
    "-LSB-": "[",
    "-RSB-": "]",
    "-LCB-": "{",
    "-RCB-": "}",
    "-LPR-": "(",
    "-RPR-": ")",
}


_ESCAPE = re.compile("|".join(map(re.escape, PTB_ESCAPES)))


def unescape_tokens(text: str) -> str:
    """`text` with every PTB bracket escape replaced by its bracket, also where a token holds one glued to other
    characters (`Austria-RPR-118`); space-separated tokens stay tokens, so token offsets stay valid."""
    return _ESCAPE.sub(lambda match: PTB_ESCAPES[match.group()], text)


INCLUSIVE, EXCLUSIVE = "inclusive", "exclusive"
CONVENTIONS = [(TOKEN, INCLUSIVE), (TOKEN, EXCLUSIVE), (CHAR, INCLUSIVE), (CHAR, EXCLUSIVE)]


def space_token_offsets(text: str) -> list[tuple[int, int]]:
    """Character spans of `text.split(' ')`, the tokenisation of the official English files."""
    offsets, position = [], 0
    for token in text.split(" "):
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return offsets


def _char_span(sentence: str, offsets: list[tuple[int, int]] | None, start: int, end: int, end_mode: str):
    """Character span [s, e) of an entity under one convention, or None if it does not fit the sentence."""
    last = end if end_mode == INCLUSIVE else end - 1
    if offsets is None:
        if 0 <= start <= last < len(sentence):
            return start, last + 1
        return None
    if 0 <= start <= last < len(offsets):
        return offsets[start][0], offsets[last][1]
    return None


def _parse_line(line: str, number: int, name: str) -> tuple[str, list[list]]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name}:{number}: not JSON: {error}") from None
    if not isinstance(row, list) or not row or not isinstance(row[0], str):
        raise ValueError(f"{name}:{number}: expected [sentence, [start, end, surface, label], ...]")
    for item in row[1:]:
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not all(isinstance(x, int) for x in item[:2])
            or not all(isinstance(x, str) for x in item[2:])
        ):
            raise ValueError(f"{name}:{number}: malformed entity {item!r}; expected [start, end, surface, label]")
    return row[0], row[1:]


def detect_convention(rows: list[tuple[str, list[list]]]) -> tuple[str, str]:
    """The (offsets, end) convention under which most surfaces agree with their sentences."""
    votes = {c: 0 for c in CONVENTIONS}
    seen = 0
    for sentence, items in rows:
        offsets = space_token_offsets(sentence)
        for start, end, surface, _ in items:
            seen += 1
            for unit, end_mode in CONVENTIONS:
                span = _char_span(sentence, offsets if unit == TOKEN else None, start, end, end_mode)
                if span and sentence[span[0] : span[1]] == surface:
                    votes[(unit, end_mode)] += 1
        if seen >= 2000:
            break
    return max(CONVENTIONS, key=lambda c: votes[c])


def read_padellm_json(
    text: str, name: str = "doc", offsets: str = "auto", end: str = "auto", language: str | None = None
) -> tuple[list[Document], dict]:
    lines = [(n, line) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
    rows = [_parse_line(line, n, name) for n, line in lines]
    unit, end_mode = detect_convention(rows)
    unit = unit if offsets == "auto" else offsets
    end_mode = end_mode if end == "auto" else end
    if language is None:
        language = ENGLISH if unit == TOKEN else CHINESE
    documents = []
    for index, ((number, _), (sentence, items)) in enumerate(zip(lines, rows)):
        token_offsets = space_token_offsets(sentence) if unit == TOKEN else None
        text = unescape_tokens(sentence) if unit == TOKEN else sentence
        text_offsets = space_token_offsets(text) if unit == TOKEN else None
        entities = []
        for start, stop, surface, label in items:
            span = _char_span(sentence, token_offsets, start, stop, end_mode)
            if span is None or sentence[span[0] : span[1]] != surface:
                found = None if span is None else sentence[span[0] : span[1]]
                raise ValueError(
                    f"{name}:{number}: entity [{start}, {stop}, {surface!r}, {label}] does not match the sentence "
                    f"under {unit} offsets with {end_mode} end (found {found!r})"
                )
            span = _char_span(text, text_offsets, start, stop, end_mode)  # the same tokens, brackets unescaped
            entities.append(make_entity(text, span[0], span[1], label))
        documents.append(
            Document(
                id=f"{name}-{index}",
                text=text,
                entities=tuple(entities),
                language=language,
                tokens=tuple(text_offsets) if text_offsets else None,
            )
        )
    return documents, {"offsets": unit, "end": end_mode}


def write_padellm_json(documents: list[Document], offsets: str = TOKEN, end: str = INCLUSIVE) -> str:
    """Documents in the official format (token offsets need texts whose tokens are separated by one space)."""
    out = []
    for document in documents:
        row: list = [document.text]
        token_offsets = space_token_offsets(document.text) if offsets == TOKEN else None
        starts = {s: i for i, (s, _) in enumerate(token_offsets)} if token_offsets else None
        ends = {e: i for i, (_, e) in enumerate(token_offsets)} if token_offsets else None
        for entity in document.entities:
            if starts is None or ends is None:
                first, last = entity.start, entity.end - 1
            else:
                if entity.start not in starts or entity.end not in ends:
                    raise ValueError(f"document {document.id!r}: {entity} is not on token boundaries")
                first, last = starts[entity.start], ends[entity.end]
            row.append([first, last if end == INCLUSIVE else last + 1, entity.text, entity.label])
        out.append(json.dumps(row, ensure_ascii=False) + "\n")
    return "".join(out)
