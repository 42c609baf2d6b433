"""Character-offset grounding: map predicted mention strings back to spans of the text.

PaDeLLM predicts strings, not offsets (a limitation the authors list). Under one label, the j-th prediction
of a string maps to its j-th occurrence in the text. For languages written with spaces only whole-word
occurrences count where there are any, so that "US" is not found inside "USA". A prediction with no such
occurrence keeps no span and is counted by the caller. Spans of different labels may nest or overlap.

A predicted string that does not occur in the text at all (a misspelt or invented name: "FEFA" for "FIFA") can
never be one of the text's entities, whose strings are spans of it: `split_absent` sets such predictions
aside, so they are counted but not returned. Every method (PaDeLLM, AutoReg_Struct) applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .schemas import CHINESE

T = TypeVar("T")


def occurrences(text: str, mention: str, language: str) -> list[int]:
    """Start offsets of `mention` in `text` (overlapping ones included), whole-word ones where there are any."""
    if not mention:
        return []
    starts: list[int] = []
    index = text.find(mention)
    while index != -1:
        starts.append(index)
        index = text.find(mention, index + 1)
    if language == CHINESE:
        return starts
    end = len(mention)

    def at_boundary(start: int) -> bool:
        before = text[start - 1] if start > 0 else " "
        after = text[start + end] if start + end < len(text) else " "
        # Only a letter or digit glued to the mention's own letter or digit breaks a word boundary.
        return not (before.isalnum() and mention[0].isalnum()) and not (after.isalnum() and mention[-1].isalnum())

    # Inside-word occurrences count only where the text has no whole-word one (e.g. a glued token).
    return [s for s in starts if at_boundary(s)] or starts


def ground(text: str, mentions: list[tuple[str, str]], language: str) -> list[tuple[int, int] | None]:
    """Spans for (label, mention) pairs given in prediction order; None where a mention cannot be placed."""
    used: dict[tuple[str, str], int] = {}
    cache: dict[str, list[int]] = {}
    spans: list[tuple[int, int] | None] = []
    for label, mention in mentions:
        if mention not in cache:
            cache[mention] = occurrences(text, mention, language)
        nth = used.get((label, mention), 0)
        used[(label, mention)] = nth + 1
        starts = cache[mention]
        spans.append((starts[nth], starts[nth] + len(mention)) if nth < len(starts) else None)
    return spans


def split_absent(text: str, mentions: list[T], mention_text: Callable[[T], str]) -> tuple[list[T], list[T]]:
    """(predictions whose string occurs in the text, those whose string does not), each in the given order."""
    present: list[T] = []
    absent: list[T] = []
    for mention in mentions:
        (present if mention_text(mention) in text else absent).append(mention)
    return present, absent
