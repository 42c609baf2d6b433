"""The stream's message formats.

Input (value of a record on the input topic, UTF-8 JSON, at most `max_message_bytes`):

    {"id": "doc-1", "text": "EU rejects German call .", "schema": "conll03", "labels": ["PER", "ORG"],
     "language": "en"}

`id` and `text` are required; `schema` (default: the stream's), `labels` (default: all of the schema) and
`language` (must agree with the schema when given) are optional. The record key is not used for routing
the output: the output key is always the document id.

Output: key = document id (so a re-delivered document overwrites its earlier record in a compacted topic,
and consumers can de-duplicate by key); value = the entity record JSON (service/records.py); headers
`record-version`, `schema`, `model`, `model-version`, and `source` = "topic/partition/offset".

Dead letters: the original key and value bytes, unchanged, with headers `error` (the reason), `error-type`,
`source-topic`, `source-partition`, `source-offset`, `timestamp`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from padellm_ner.validation import (
    DEFAULT_MAX_TEXT_CHARS,
    InvalidInput,
    check_id,
    check_labels,
    check_schema,
    check_text,
)

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # under Kafka's default max.message.bytes (1,048,588)


@dataclass(frozen=True)
class StreamDocument:
    id: str
    text: str
    schema: str
    labels: list[str]


def parse_document(
    value: bytes | None,
    *,
    default_schema: str,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
) -> StreamDocument:
    """The document of an input record, or InvalidInput with the reason it goes to the dead-letter topic."""
    if value is None:
        raise InvalidInput("the record has no value (a tombstone)")
    if len(value) > max_message_bytes:
        raise InvalidInput(f"the record is {len(value)} bytes; the limit is {max_message_bytes}")
    try:
        decoded = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the value is not UTF-8: {error}") from None
    try:
        body = json.loads(decoded)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"the value is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise InvalidInput("the value is not a JSON object")
    for field in ("id", "text"):
        if field not in body:
            raise InvalidInput(f"the field {field!r} is missing")
    if not isinstance(body["id"], str) or not isinstance(body["text"], str):
        raise InvalidInput("'id' and 'text' must be strings")
    check_id(body["id"])
    check_text(body["text"], max_text_chars)
    schema = check_schema(body.get("schema") or default_schema)
    labels = body.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise InvalidInput("'labels' must be a list of strings")
    labels = check_labels(schema, labels)
    language = body.get("language")
    if language is not None and language != schema.language:
        raise InvalidInput(f"language {language!r} does not match schema {schema.name} ({schema.language})")
    return StreamDocument(body["id"], body["text"], schema.name, labels)


def output_headers(record, source: str) -> list[tuple[str, bytes]]:
    return [
        ("record-version", record.record_version.encode()),
        ("schema", record.schema.encode()),
        ("model", record.model.encode()),
        ("model-version", record.model_version.encode()),
        ("source", source.encode()),
    ]


def dead_letter_headers(
    reason: str, error_type: str, topic: str, partition: int, offset: int, timestamp_ms: int
) -> list[tuple[str, bytes]]:
    return [
        ("error", reason.encode()),
        ("error-type", error_type.encode()),
        ("source-topic", topic.encode()),
        ("source-partition", str(partition).encode()),
        ("source-offset", str(offset).encode()),
        ("timestamp", str(timestamp_ms).encode()),
    ]
