"""Input validation shared by the public API, the workers and the stream: one set of rules, clear messages.

Every function raises `InvalidInput` with a message meant for the caller (gRPC INVALID_ARGUMENT, a
dead-letter reason on Kafka).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .core import LabelSchema, get_schema
from .errors import ErrorCode, PadellmError

DEFAULT_MAX_TEXT_CHARS = 100_000  # a document (the service splits it into windows)
DEFAULT_MAX_WINDOW_CHARS = 8192  # one window, as a worker call carries it
DEFAULT_MAX_WINDOW_TOKENS = 512  # estimated tokens of one window (padellm_ner.core.segment): 5x the service's default
ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/\-]{1,256}$")


class InvalidInput(PadellmError, ValueError):
    """A request that is wrong (INVALID_ARGUMENT): retrying it cannot help."""

    code = ErrorCode.INVALID_ARGUMENT


def check_text(text: str, max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text is empty", field="text")
    if len(text) > max_chars:
        raise InvalidInput(f"text has {len(text)} characters; the limit is {max_chars}", field="text")
    if "\x00" in text:
        raise InvalidInput("text contains a NUL character", field="text")
    return text


def check_id(document_id: str) -> str:
    if not ID_PATTERN.match(document_id or ""):
        raise InvalidInput(
            f"document id {document_id!r} is invalid: use 1-256 characters of letters, digits and . _ : / -",
            field="id",
        )
    return document_id


def check_schema(name: str) -> LabelSchema:
    try:
        return get_schema(name)
    except KeyError as error:
        raise InvalidInput(error.args[0], field="schema") from None


def check_labels(schema: LabelSchema, labels: Sequence[str]) -> list[str]:
    unknown = [label for label in labels if label not in schema.labels]
    if unknown:
        raise InvalidInput(
            f"labels {unknown} are not in schema {schema.name} ({', '.join(schema.labels)})", field="labels"
        )
    if len(set(labels)) != len(labels):
        raise InvalidInput(f"labels {list(labels)} repeat a label", field="labels")
    return list(labels) or list(schema.labels)


def check_mention_index(count: int, k: int, max_count: int) -> None:
    if not 1 <= count <= max_count:
        raise InvalidInput(f"count {count} is outside 1..{max_count}", field="count")
    if not 1 <= k <= count:
        raise InvalidInput(f"k {k} is outside 1..{count}", field="k")
