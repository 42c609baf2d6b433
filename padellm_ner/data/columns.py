"""Column files: CoNLL word-per-line files and one-character-per-line Chinese files.

Word files (CoNLL-2003): `TOKEN ... TAG` per line, blank lines between sentences, `-DOCSTART-` lines between
documents; the text is the tokens joined with single spaces. Character files (Resume, Weibo, Youku, MSRA,
E-commerce): `CHAR<TAB>TAG` or `CHAR TAG`; a character may itself be a space, so a line is split at its
LAST separator and never stripped; the text is the characters joined with nothing. Weibo's revised files
append a one-digit word-segmentation position to each character ("科0"), which is removed.
Tags may be IOB1, IOB2/BIO, BIOES or BMES (see `tagging`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core.document import Document, make_entity
from ..core.schemas import CHINESE, ENGLISH
from .padellm_json import space_token_offsets
from .tagging import decode, detect_scheme, encode, split_tag

WORDS = "words"
CHARS = "chars"
CHARS_WITH_SEGMENT_DIGIT = "chars+segment-digit"
DOCSTART = "-DOCSTART-"


@dataclass
class _Sentence:
    tokens: list[str]
    tags: list[str]
    source_document: str | None


def _split_chars_line(line: str) -> tuple[str, str]:
    separator = "\t" if "\t" in line else " "
    token, sep, tag = line.rpartition(separator)
    if not sep:
        raise ValueError("expected a character and a tag")
    return token, tag


def detect_mode(lines: list[str]) -> str:
    """Whether a column file holds words or characters, from the shape of its first tokens."""
    firsts: list[str] = []
    for line in lines:
        if line.strip() and not line.startswith(DOCSTART):
            try:
                firsts.append(_split_chars_line(line)[0])
            except ValueError:
                continue
            if len(firsts) >= 2000:
                break
    if not firsts:
        return WORDS
    single = sum(len(t) == 1 for t in firsts) / len(firsts)
    segment_digit = sum(len(t) == 2 and t[1].isdigit() for t in firsts) / len(firsts)
    if single >= 0.9:
        return CHARS
    if segment_digit >= 0.9:
        return CHARS_WITH_SEGMENT_DIGIT
    return WORDS


def _sentences(lines: list[str], mode: str, name: str) -> list[_Sentence]:
    sentences: list[_Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    documents = 0
    source: str | None = None

    def flush() -> None:
        nonlocal tokens, tags
        if tokens:
            sentences.append(_Sentence(tokens, tags, source))
        tokens, tags = [], []

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            flush()
            continue
        if mode == WORDS:
            fields = line.split()
            if fields[0] == DOCSTART:
                flush()
                documents += 1
                source = f"{name}-doc{documents - 1}"
                continue
            if len(fields) < 2:
                raise ValueError(f"{name}:{number}: expected a token and a tag, got {line!r}")
            token, tag = fields[0], fields[-1]
        else:
            try:
                token, tag = _split_chars_line(line)
            except ValueError as error:
                raise ValueError(f"{name}:{number}: {error}, got {line!r}") from None
            tag = tag.strip()
            if mode == CHARS_WITH_SEGMENT_DIGIT and len(token) >= 2 and token[-1].isdigit():
                token = token[:-1]
        try:
            split_tag(tag)
        except ValueError as error:
            raise ValueError(f"{name}:{number}: {error}") from None
        tokens.append(token)
        tags.append(tag)
    flush()
    return sentences


def read_columns(text: str, name: str = "doc", mode: str = "auto", scheme: str = "auto") -> tuple[list[Document], dict]:
    """Documents of a column file's content, and what was detected (mode, tagging scheme)."""
    lines = [line.rstrip("\r\n") for line in text.split("\n")]
    if mode == "auto":
        mode = detect_mode(lines)
    if mode not in (WORDS, CHARS, CHARS_WITH_SEGMENT_DIGIT):
        raise ValueError(f"unknown column mode {mode!r}")
    sentences = _sentences(lines, mode, name)
    detected = detect_scheme([s.tags for s in sentences]) if sentences else "iob2"
    joiner = " " if mode == WORDS else ""
    language = ENGLISH if mode == WORDS else CHINESE
    documents: list[Document] = []
    for index, sentence in enumerate(sentences):
        offsets: list[tuple[int, int]] = []
        position = 0
        for token in sentence.tokens:
            offsets.append((position, position + len(token)))
            position += len(token) + len(joiner)
        doc_text = joiner.join(sentence.tokens)
        spans = decode(sentence.tags)
        entities = tuple(make_entity(doc_text, offsets[s][0], offsets[e - 1][1], label) for s, e, label in spans)
        documents.append(
            Document(
                id=f"{name}-{index}",
                text=doc_text,
                entities=entities,
                language=language,
                source_document=sentence.source_document,
                tokens=tuple(offsets) if mode == WORDS else None,
            )
        )
    return documents, {"mode": mode, "scheme": detected if scheme == "auto" else scheme}


def _token_spans(document: Document, mode: str) -> tuple[list[str], list[tuple[int, int, str]]]:
    if mode == WORDS:
        offsets = list(document.tokens) if document.tokens else space_token_offsets(document.text)
    else:
        offsets = [(i, i + 1) for i in range(len(document.text))]
    starts = {start: i for i, (start, _) in enumerate(offsets)}
    ends = {end: i for i, (_, end) in enumerate(offsets)}
    spans = []
    for entity in document.entities:
        if entity.start not in starts or entity.end not in ends:
            raise ValueError(f"document {document.id!r}: entity {entity} does not fall on token boundaries")
        spans.append((starts[entity.start], ends[entity.end] + 1, entity.label))
    return [document.text[s:e] for s, e in offsets], spans


def write_columns(documents: list[Document], scheme: str = "iob2", mode: str = WORDS) -> str:
    """Documents as a column file (the inverse of `read_columns`); `-DOCSTART-` between source documents."""
    out: list[str] = []
    source: str | None = None
    for document in documents:
        if mode == WORDS and document.source_document is not None and document.source_document != source:
            source = document.source_document
            out.append(f"{DOCSTART} -X- -X- O\n\n")
        tokens, spans = _token_spans(document, mode)
        tags = encode(len(tokens), spans, scheme)
        separator = " " if mode == WORDS else "\t"
        out.append("".join(f"{token}{separator}{tag}\n" for token, tag in zip(tokens, tags)) + "\n")
    return "".join(out)
