"""Sequence tags <-> token spans, for IOB1, IOB2, BIOES and BMES (BIO = IOB2).

Decoding is one lenient rule for every scheme, the conlleval convention: B/S always start an entity;
I/M/E continue the open entity of the same type and otherwise start one; E/S close it; O closes it.
On well-formed input of any of these schemes this is exactly that scheme's reading.
"""

from __future__ import annotations

from collections.abc import Sequence

SCHEMES = ("iob1", "iob2", "bioes", "bmes")
_STARTS = {"B", "S"}
_CONTINUES = {"I", "M", "E"}
_CLOSES = {"E", "S"}


def split_tag(tag: str) -> tuple[str, str | None]:
    """("B", "PER") for "B-PER"; ("O", None) for "O". Raises on anything else."""
    if tag == "O":
        return "O", None
    prefix, sep, label = tag.partition("-")
    if not sep or not label or prefix not in _STARTS | _CONTINUES:
        raise ValueError(f"malformed tag {tag!r}: expected O or one of B-, I-, M-, E-, S- and a type")
    return prefix, label


def decode(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Token spans (start, end exclusive, label) of a tag sequence."""
    spans: list[tuple[int, int, str]] = []
    open_start: int | None = None
    open_label: str | None = None

    def close(end: int) -> None:
        nonlocal open_start, open_label
        if open_start is not None:
            spans.append((open_start, end, open_label))  # type: ignore[arg-type]
        open_start, open_label = None, None

    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix == "O":
            close(i)
            continue
        if prefix in _STARTS or open_label != label:
            close(i)
            open_start, open_label = i, label
        if prefix in _CLOSES:
            close(i + 1)
    close(len(tags))
    return spans


def detect_scheme(sentences: Sequence[Sequence[str]]) -> str:
    """The scheme a tagged corpus is written in."""
    prefixes: set[str] = set()
    iob1 = False
    for tags in sentences:
        previous: str | None = None
        for tag in tags:
            prefix, label = split_tag(tag)
            prefixes.add(prefix)
            if prefix == "I" and previous != label:
                iob1 = True
            previous = label
    if "M" in prefixes:
        return "bmes"
    if prefixes & {"E", "S"}:
        return "bioes"
    return "iob1" if iob1 else "iob2"


def encode(length: int, spans: Sequence[tuple[int, int, str]], scheme: str) -> list[str]:
    """Tags for non-overlapping token spans in the given scheme."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    tags = ["O"] * length
    ordered = sorted(spans)
    for (start, end, label), following in zip(ordered, [*ordered[1:], None]):
        if any(t != "O" for t in tags[start:end]) or (following and following[0] < end):
            raise ValueError(f"overlapping or nested spans cannot be written as {scheme} tags: {ordered}")
        if scheme in ("bioes", "bmes"):
            inside = "M" if scheme == "bmes" else "I"
            if end - start == 1:
                tags[start] = f"S-{label}"
            else:
                tags[start] = f"B-{label}"
                for i in range(start + 1, end - 1):
                    tags[i] = f"{inside}-{label}"
                tags[end - 1] = f"E-{label}"
            continue
        if scheme == "iob2":
            first = "B"
        else:  # iob1: B only where an entity of the same type ends on the previous token
            first = "B" if start > 0 and tags[start - 1] in (f"B-{label}", f"I-{label}") else "I"
        tags[start] = f"{first}-{label}"
        for i in range(start + 1, end):
            tags[i] = f"I-{label}"
    return tags
