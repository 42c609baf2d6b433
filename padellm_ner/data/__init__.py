"""Readers and writers of NER corpora and prediction files; all readers yield `core.Document`."""

from .columns import read_columns, write_columns
from .formats import (
    DOCUMENT_FORMATS,
    PREDICTION_FORMATS,
    Corpus,
    detect_format,
    read_corpus,
    read_predictions,
)
from .jsonl import read_jsonl, write_jsonl
from .padellm_json import read_padellm_json, write_padellm_json
from .predictions import read_padellm_results, read_prediction_jsonl, write_padellm_results
from .stats import corpus_stats, stats_table

__all__ = [
    "DOCUMENT_FORMATS",
    "PREDICTION_FORMATS",
    "Corpus",
    "corpus_stats",
    "detect_format",
    "read_columns",
    "read_corpus",
    "read_jsonl",
    "read_padellm_json",
    "read_padellm_results",
    "read_prediction_jsonl",
    "read_predictions",
    "stats_table",
    "write_columns",
    "write_jsonl",
    "write_padellm_json",
    "write_padellm_results",
]
