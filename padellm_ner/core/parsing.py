"""Parsing of the model's raw outputs: the step-1 count and the step-2 mention.

The official inference stops a count at the newline token or eos and treats an empty count and "0" alike
as zero; a count that is not a number falls back to its first character. Every such case is reported here
with an explicit status instead of being hidden, and counts are capped so that one bad output cannot fan
out into an unbounded number of mention sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DEFAULT_MAX_COUNT = 30


class CountStatus(str, Enum):
    OK = "ok"  # a plain non-negative integer (zero included)
    EMPTY = "empty"  # nothing before newline/eos: zero, as in the official inference
    LEADING_DIGIT = "leading-digit"  # not a number, but starts with a digit: the official fallback
    INVALID = "invalid"  # not a number at all: zero
    CAPPED = "capped"  # a number above the cap: the cap
    TRUNCATED = "truncated"  # cut at the token limit before a stop: the official fallback's value, not trusted


@dataclass(frozen=True, slots=True)
class ParsedCount:
    value: int
    status: CountStatus
    raw: str


def _cut(raw: str, stop_strings: tuple[str, ...]) -> str:
    """The text before the first newline or stop string (eos as text), without surrounding blanks."""
    cut = len(raw)
    for stop in ("\n", *stop_strings):
        if stop:
            index = raw.find(stop)
            if index != -1:
                cut = min(cut, index)
    return raw[:cut].strip()


def parse_count(raw: str, max_count: int = DEFAULT_MAX_COUNT, stop_strings: tuple[str, ...] = ()) -> ParsedCount:
    if max_count < 0:
        raise ValueError("max_count must be >= 0")
    text = _cut(raw, stop_strings)
    if not text:
        return ParsedCount(0, CountStatus.EMPTY, raw)
    if text.isascii() and text.isdigit():
        value = int(text)
        if value > max_count:
            return ParsedCount(max_count, CountStatus.CAPPED, raw)
        return ParsedCount(value, CountStatus.OK, raw)
    if text[0].isascii() and text[0].isdigit():
        return ParsedCount(min(int(text[0]), max_count), CountStatus.LEADING_DIGIT, raw)
    return ParsedCount(0, CountStatus.INVALID, raw)


def parse_mention(raw: str, stop_strings: tuple[str, ...] = ()) -> str | None:
    """The mention text of a step-2 output, or None when the model produced nothing usable."""
    text = _cut(raw, stop_strings)
    return text or None
