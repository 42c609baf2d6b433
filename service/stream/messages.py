"""The stream's message formats.

Input (value of a record on the input topic, UTF-8 JSON, at most `max_message_bytes`):

    {"id": "doc-1", "text": "EU rejects German call .", "schema": "conll03", "labels": ["PER", "ORG"],
     "language": "en"}

`id` and `text` are required; `schema` (default: the stream's), `labels` (default: all of the schema) and
`language` (must agree with the schema when given) are optional. The record key is not used for routing
the output: the output key is always the document id.

Output: key = document id (so a re-delivered document overwrites its earlier record in a compacted topic,
and consumers can de-duplicate by key); value = the entity record JSON (service/records.py); headers
`record-version`, `schema`, `model`, `model-version`, `source` = "topic/partition/offset", and, for a second
record of an id seen at another offset (`--duplicate-ids process`, the default), `duplicate-of` = the first one's
source.

Dead letters: the original key and value bytes, unchanged, with headers `error` (the reason), `error-type` (
`invalid-input`, `deadline`, `schema-not-served`, `worker-error`, `internal-error`), `exception-type`, `source-topic`,
`source-partition`, `source-offset`, `timestamp`. A value over `max_message_bytes` (or a key over 4 KiB) is cut
to that size, with headers `truncated-value`, `original-value-size` and `original-value-sha256` (likewise for the
key), so that every dead letter fits the producer's limit.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from padellm_ner.validation import (
    DEFAULT_MAX_TEXT_CHARS,
    InvalidInput,
    check_id,
    check_labels,
    check_schema,
    check_text,
)

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000  # under Kafka's default max.message.bytes (1,048,588)


class InputDocument(msgspec.Struct, frozen=True):
    """The JSON object of an input record, typed: a field of the wrong type, a lone surrogate escape, invalid
    UTF-8 or JSON nested too deeply is invalid input with a reason naming the field, not a crash."""

    id: str
    text: str
    schema: str | None = None
    labels: list[str] = []
    language: str | None = None


_DECODER = msgspec.json.Decoder(InputDocument)


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
        body = _DECODER.decode(value)
    except msgspec.ValidationError as error:  # valid JSON of the wrong shape: the message names the field
        raise InvalidInput(f"the value is not a document: {error}") from None
    except msgspec.DecodeError as error:  # not UTF-8, not JSON, or a string with a lone surrogate
        raise InvalidInput(f"the value is not valid UTF-8 JSON: {error}") from None
    except RecursionError:
        raise InvalidInput("the value is JSON nested too deeply") from None
    check_id(body.id)
    check_text(body.text, max_text_chars)
    schema = check_schema(body.schema or default_schema)
    labels = check_labels(schema, body.labels)
    if body.language is not None and body.language != schema.language:
        raise InvalidInput(f"language {body.language!r} does not match schema {schema.name} ({schema.language})")
    return StreamDocument(body.id, body.text, schema.name, labels)


def output_headers(record, source: str) -> list[tuple[str, bytes]]:
    return [
        ("record-version", record.record_version.encode()),
        ("schema", record.schema.encode()),
        ("model", record.model.encode()),
        ("model-version", record.model_version.encode()),
        ("source", source.encode()),
    ]


MAX_REASON_CHARS = 2_000  # a reason quoting a huge input is cut here
MAX_DEAD_LETTER_KEY_BYTES = 4_096


def dead_letter_headers(
    reason: str,
    error_type: str,
    exception_type: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int,
) -> list[tuple[str, bytes]]:
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "..."
    return [
        ("error", reason.encode("utf-8", "backslashreplace")),
        ("error-type", error_type.encode()),
        ("exception-type", exception_type.encode()),
        ("source-topic", topic.encode()),
        ("source-partition", str(partition).encode()),
        ("source-offset", str(offset).encode()),
        ("timestamp", str(timestamp_ms).encode()),
    ]


def fit_dead_letter(
    key: bytes | None, value: bytes | None, max_value_bytes: int
) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The key and value a dead letter can carry: the original bytes, or, where they would pass the producer's
    limit, their first bytes with headers saying so (`truncated`, the original sizes and SHA-256), so that a
    dead letter is never retried forever."""
    headers: list[tuple[str, bytes]] = []
    for name, data, limit in (("value", value, max_value_bytes), ("key", key, MAX_DEAD_LETTER_KEY_BYTES)):
        if data is not None and len(data) > limit:
            headers += [
                (f"truncated-{name}", b"true"),
                (f"original-{name}-size", str(len(data)).encode()),
                (f"original-{name}-sha256", hashlib.sha256(data).hexdigest().encode()),
            ]
    if value is not None and len(value) > max_value_bytes:
        value = value[:max_value_bytes]
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
        key = key[:MAX_DEAD_LETTER_KEY_BYTES]
    return key, value, headers
