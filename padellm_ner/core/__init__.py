"""The PaDeLLM-NER method's rules, in one place that `service/` and `workers/` both import."""

from .aggregate import (
    CountResult,
    DocumentPrediction,
    LabelCount,
    MentionResult,
    PredictedMention,
    aggregate,
    parse_counts,
)
from .dedup import DEDUP_POLICIES, DedupPolicy, dedup_mask
from .document import Document, Entity, make_entity
from .grounding import ground, occurrences, split_absent
from .metrics import LabelScore, Scores, scores_table, set_scores, span_scores
from .parsing import DEFAULT_MAX_COUNT, CountStatus, ParsedCount, parse_count, parse_mention
from .reformulate import TrainingExample, reformulate, reformulate_all
from .schemas import CHINESE, DEFAULT_SCHEMA, ENGLISH, SCHEMAS, LabelSchema, get_schema, infer_schema
from .templates import TEMPLATES, PromptTemplate, template_for

__all__ = [
    "CHINESE",
    "DEDUP_POLICIES",
    "DEFAULT_MAX_COUNT",
    "DEFAULT_SCHEMA",
    "ENGLISH",
    "SCHEMAS",
    "TEMPLATES",
    "CountResult",
    "CountStatus",
    "DedupPolicy",
    "Document",
    "DocumentPrediction",
    "Entity",
    "LabelCount",
    "LabelSchema",
    "LabelScore",
    "MentionResult",
    "ParsedCount",
    "PredictedMention",
    "PromptTemplate",
    "Scores",
    "TrainingExample",
    "aggregate",
    "dedup_mask",
    "get_schema",
    "ground",
    "infer_schema",
    "make_entity",
    "occurrences",
    "parse_count",
    "parse_counts",
    "parse_mention",
    "reformulate",
    "reformulate_all",
    "scores_table",
    "set_scores",
    "span_scores",
    "split_absent",
    "template_for",
]
