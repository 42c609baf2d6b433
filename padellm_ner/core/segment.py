"""Documents into windows of whole sentences: the unit the model reads at once.

PaDeLLM models are trained on sentences: asked for the count of a label in a whole article they undercount it
badly. A document is therefore split into sentences (sentencex, a maintained rule-based segmenter for some 300
languages, for text written with spaces; the sentence-final marks `。！？；` for Chinese) and at line breaks
(headlines, datelines, table rows and list items end at one), and consecutive sentences are packed into windows
up to a token budget. A sentence longer than the budget is cut
at the best break before it (a line break, then a clause mark, then any space; for Chinese any character).

Inside a window every run of whitespace, line breaks included, becomes one space: the model was trained on
single-spaced sentences, and its prompt uses line breaks as field separators. `Window.document_span` maps a
span of the window's text back to the document, so every offset a caller sees is an offset into the document
as it was sent, whatever whitespace it holds.

Token counts here are estimates (`estimate_tokens`): windows must not depend on which backend's tokenizer reads
them, so the same document gives the same windows in the engine, the service and the stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from .schemas import CHINESE, ENGLISH

DEFAULT_WINDOW_TOKENS = 64  # English; measured: experiments/document-windows
# The budget where none is given, by language. Chinese is estimated at 2 tokens a character (a byte-level BPE's
# cost) while its sentences run long: Resume's test sentences reach 130 characters at the 99th percentile. 320
# keeps such a sentence whole, as the model was trained on it, and fits a worker's 512.
DEFAULT_WINDOW_TOKENS_BY_LANGUAGE = {ENGLISH: DEFAULT_WINDOW_TOKENS, CHINESE: 320}


class WindowUnit(str, Enum):
    PACKED = "packed"  # consecutive sentences up to the token budget
    SENTENCE = "sentence"  # one sentence per window (cut only where it exceeds the budget)


@dataclass(frozen=True, slots=True)
class WindowPolicy:
    """How a document is split. The default, one sentence per window (a longer one cut into pieces of at most 64
    estimated tokens in English, 320 in Chinese), scores as the corpus's own sentences do; packing sentences together reads fewer tokens but
    the sentence-trained model then misses entities (experiments/document-windows)."""

    max_tokens: int | None = None  # None: the language's default (DEFAULT_WINDOW_TOKENS_BY_LANGUAGE)
    unit: WindowUnit = WindowUnit.SENTENCE

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 8:
            raise ValueError(f"a window budget of {self.max_tokens} tokens is too small (at least 8)")
        object.__setattr__(self, "unit", WindowUnit(self.unit))

    def budget(self, language: str) -> int:
        """The window budget for documents of `language`, in estimated tokens."""
        if self.max_tokens is not None:
            return self.max_tokens
        return DEFAULT_WINDOW_TOKENS_BY_LANGUAGE.get(language, DEFAULT_WINDOW_TOKENS)

    @property
    def largest(self) -> int:
        """The largest budget of any language."""
        return self.max_tokens or max(DEFAULT_WINDOW_TOKENS_BY_LANGUAGE.values())


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of a document as the model reads it: whitespace runs collapsed to one space, no outer spaces.
    `source[i]` is the document offset of `text[i]`."""

    index: int
    text: str
    source: tuple[int, ...]

    @classmethod
    def whole(cls, text: str) -> Window:
        """A text taken as one window as it is (no whitespace collapsed): what a worker call carries."""
        return cls(0, text, tuple(range(len(text))))

    @property
    def start(self) -> int:
        return self.source[0]

    @property
    def end(self) -> int:
        return self.source[-1] + 1

    def document_span(self, start: int, end: int) -> tuple[int, int]:
        """The document offsets of the window span [start, end) (end exclusive)."""
        if not 0 <= start < end <= len(self.text):
            raise ValueError(f"span [{start}, {end}) is outside window {self.index} of length {len(self.text)}")
        return self.source[start], self.source[end - 1] + 1


_PIECE = re.compile(r"[^\W\d_]+|\d|\S", re.UNICODE)


def estimate_tokens(text: str) -> int:
    """About the number of tokens a byte-level BPE tokenizer makes of `text` (SmolLM2's: 1.06 estimated per real
    token on CoNLL-2003 test sentences, median 1.0). An ASCII word counts 1 per 4 letters begun (upper-case words,
    split finer, 1 per 2), a digit or mark 1, any other character its UTF-8 length minus one (a CJK character 2,
    an emoji 3): text that tokenizes badly is budgeted as such."""
    total = 0
    for match in _PIECE.finditer(text):
        piece = match.group()
        if not piece.isascii():
            total += sum(max(1, len(c.encode()) - 1) for c in piece)
        elif piece.isalpha():
            total += 1 + (len(piece) - 1) // (2 if piece.isupper() and len(piece) > 1 else 4)
        else:
            total += 1
    return total


_CHINESE_END = re.compile(r"[。！？；!?;]+[”’」』）)]*|\n+")


def sentence_spans(text: str, language: str) -> list[tuple[int, int]]:
    """Sentences of a document as [start, end) spans, without their outer whitespace; blank ones dropped."""
    spans: list[tuple[int, int]] = []
    if language == CHINESE:
        start = 0
        for match in _CHINESE_END.finditer(text):
            spans.append((start, match.end()))
            start = match.end()
        spans.append((start, len(text)))
    else:
        import sentencex  # a compiled segmenter; imported where it is used

        spans = [(b["start_index"], b["end_index"]) for b in sentencex.get_sentence_boundaries(language, text)]
    lines = [(start + m.start(), start + m.end()) for start, end in spans for m in _LINE.finditer(text[start:end])]
    stripped = [s for s in (_strip(text, start, end) for start, end in lines) if s]
    if language == CHINESE:
        return stripped
    return [piece for start, end in stripped for piece in _split_dateline(text, start, end)]


_LINE = re.compile(r"[^\n]+")

# A news dateline that runs on into the first sentence when a text's line breaks are lost ("LONDON 1996-12-06 Dutch
# forward Reggie Blinker ...", "WASHINGTON, Dec 7 (Reuters) - The ..."): a date or a wire agency ...
_DATELINE_END = re.compile(
    r"(?:\b\d{4}-\d{2}-\d{2}|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2}"
    r"(?:\s*,\s*\d{4})?)\b(?:\s*\((?:Reuters|AP|AFP|UPI|dpa|Bloomberg)\))?(?:\s*[-\u2013\u2014]+)?"
    r"|\((?:Reuters|AP|AFP|UPI|dpa|Bloomberg)\)(?:\s*[-\u2013\u2014]+)?"
)
_FIRST_WORD = re.compile(r"[^\W\d_][\w'.&-]*")
DATELINE_MAX_WORDS = 25


def _split_dateline(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as two spans where it opens with a dateline run on into a sentence: ... within its first
    DATELINE_MAX_WORDS words, after text whose first word is in capitals (a headline, a place: no sentence opens
    so), and followed by a sentence that opens with a capital letter. Anything else is left whole."""
    piece = text[start:end]
    first = _FIRST_WORD.search(piece)
    if first is None or not (first.group().isupper() and len(first.group()) > 1):
        return [(start, end)]
    match = _DATELINE_END.search(piece)
    if match is None or len(piece[: match.start()].split()) > DATELINE_MAX_WORDS:
        return [(start, end)]
    rest = piece[match.end() :]
    if not rest.strip() or not rest.lstrip()[0].isupper():
        return [(start, end)]
    head, tail = _strip(text, start, start + match.end()), _strip(text, start + match.end(), end)
    return [span for span in (head, tail) if span]


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


_CLAUSE_END = re.compile(r"[,;:，、；：)\]]$")


def _cut_long(text: str, start: int, end: int, max_tokens: int, language: str) -> Iterator[tuple[int, int]]:
    """A sentence over the budget as pieces within it: each piece ends at the last line break, else the last clause
    mark, else the last space (any character for Chinese) that keeps it within the budget."""
    units = (
        [(m.start() + start, m.end() + start) for m in re.finditer(r".", text[start:end], re.S)]
        if language == CHINESE
        else [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    )
    piece: list[tuple[int, int]] = []
    tokens = 0
    for unit in units:
        cost = estimate_tokens(text[unit[0] : unit[1]])
        if cost > max_tokens:  # one unbroken run longer than a window: cut it by characters
            if piece:
                yield piece[0][0], piece[-1][1]
                piece, tokens = [], 0
            yield from _cut_characters(text, *unit, max_tokens)
            continue
        if piece and tokens + cost + 1 > max_tokens:
            at = _best_break(text, piece)
            yield piece[0][0], piece[at][1]
            piece = piece[at + 1 :]
            tokens = sum(estimate_tokens(text[s:e]) + 1 for s, e in piece)
        piece.append(unit)
        tokens += cost + 1
    if piece:
        yield piece[0][0], piece[-1][1]


def _best_break(text: str, piece: list[tuple[int, int]]) -> int:
    """Index of the unit after which to cut: the last one before a line break, else the last that ends a clause,
    in the second half of the piece; else the last unit."""
    half = len(piece) // 2
    for i in range(len(piece) - 2, half - 1, -1):
        if "\n" in text[piece[i][1] : piece[i + 1][0]]:
            return i
    for i in range(len(piece) - 1, half - 1, -1):
        if _CLAUSE_END.search(text[piece[i][0] : piece[i][1]]):
            return i
    return len(piece) - 1


def _cut_characters(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    piece_start, tokens = start, 0
    for i in range(start, end):
        cost = estimate_tokens(text[i])
        if tokens + cost > max_tokens and i > piece_start:
            yield piece_start, i
            piece_start, tokens = i, 0
        tokens += cost
    yield piece_start, end


def _window(index: int, text: str, start: int, end: int) -> Window:
    chars: list[str] = []
    source: list[int] = []
    in_space = False
    for i in range(start, end):
        if text[i].isspace():
            in_space = True
            continue
        if in_space and chars:
            chars.append(" ")
            source.append(i - 1)
        in_space = False
        chars.append(text[i])
        source.append(i)
    return Window(index, "".join(chars), tuple(source))


def split_windows(text: str, language: str, policy: WindowPolicy | None = None) -> list[Window]:
    """The windows of a document, in order; together they hold every non-space character of it once."""
    policy = policy or WindowPolicy()
    budget = policy.budget(language)
    spans: list[tuple[int, int]] = []  # sentences, long ones already cut
    for start, end in sentence_spans(text, language):
        if estimate_tokens(text[start:end]) <= budget:
            spans.append((start, end))
        else:
            spans.extend(_cut_long(text, start, end, budget, language))
    grouped: list[tuple[int, int]] = []
    tokens = 0
    for start, end in spans:
        cost = estimate_tokens(text[start:end])
        if grouped and policy.unit is WindowUnit.PACKED and tokens + cost + 1 <= budget:
            grouped[-1] = (grouped[-1][0], end)
            tokens += cost + 1
        else:
            grouped.append((start, end))
            tokens = cost
    return [_window(i, text, start, end) for i, (start, end) in enumerate(grouped)]
