"""Format detection and the one entry point for reading a corpus or a prediction file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.document import Document
from ..core.scoring import PredictionRecord
from .columns import CHARS, WORDS, read_columns
from .jsonl import read_jsonl
from .padellm_json import read_padellm_json
from .predictions import read_padellm_results, read_prediction_jsonl, records_from_documents

CONLL, CHARS_FORMAT, PADELLM_JSON, JSONL, PADELLM_RESULTS = "conll", "chars", "padellm-json", "jsonl", "padellm-results"
DOCUMENT_FORMATS = (CONLL, CHARS_FORMAT, PADELLM_JSON, JSONL)
PREDICTION_FORMATS = (*DOCUMENT_FORMATS, PADELLM_RESULTS)


@dataclass
class Corpus:
    path: str
    format: str
    documents: list[Document]
    details: dict = field(default_factory=dict)


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    # Some corpora (Weibo's first release) hold invalid UTF-8; replace it rather than fail on a whole file.
    return Path(path).read_bytes().decode(encoding, errors="replace")


def detect_format(text: str) -> str:
    """The format of a file's content: JSON shapes first, column files otherwise.

    A column file of characters may itself start with "[" or "{" (a bracket is a character), so JSON
    formats are recognised only by content that parses.
    """
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return JSONL
    first_line = stripped.split("\n", 1)[0].strip()
    try:
        row = json.loads(first_line)
    except json.JSONDecodeError:
        row = None
    if isinstance(row, list) and row and isinstance(row[0], str):
        return PADELLM_JSON
    if isinstance(row, dict):
        return JSONL
    if stripped[0] == "[":
        try:
            rows = json.loads(stripped)
        except json.JSONDecodeError:
            rows = None
        if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
            return PADELLM_RESULTS
    return CONLL


def read_corpus(
    path: str | Path,
    format: str = "auto",
    *,
    scheme: str = "auto",
    offsets: str = "auto",
    end: str = "auto",
    encoding: str = "utf-8",
) -> Corpus:
    text = read_text(path, encoding)
    name = Path(path).stem
    fmt = detect_format(text) if format == "auto" else format
    if fmt == PADELLM_RESULTS:
        raise ValueError(f"{path}: a results file holds predictions, not documents; use `score --pred`")
    if fmt in (CONLL, CHARS_FORMAT):
        mode = "auto" if format == "auto" else (WORDS if fmt == CONLL else CHARS)
        documents, details = read_columns(text, name, mode=mode, scheme=scheme)
        if details["mode"] != WORDS:
            fmt = CHARS_FORMAT
    elif fmt == PADELLM_JSON:
        documents, details = read_padellm_json(text, name, offsets=offsets, end=end)
    elif fmt == JSONL:
        documents, details = read_jsonl(text, name)
    else:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(PREDICTION_FORMATS)}")
    return Corpus(str(path), fmt, documents, details)


def read_predictions(path: str | Path, format: str = "auto", **options) -> tuple[str, list[PredictionRecord]]:
    text = read_text(path)
    fmt = detect_format(text) if format == "auto" else format
    if fmt == PADELLM_RESULTS:
        return fmt, read_padellm_results(text, Path(path).name)
    if fmt == JSONL:
        return fmt, read_prediction_jsonl(text, Path(path).name)
    corpus = read_corpus(path, fmt, **options)
    return corpus.format, records_from_documents(corpus.documents)
