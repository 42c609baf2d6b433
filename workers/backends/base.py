"""What a backend offers the worker server: count and mention sequences, and whole documents (Batch mode).

Requests carry label tags; backends build prompts with the core's templates, so every backend sends the
same bytes a released PaDeLLM checkpoint expects. Errors that the caller should see with a gRPC status are
raised as `padellm_ner.errors.PadellmError` with their status code (invalid input as `InvalidInput`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, Self, TypeVar

from padellm_ner.core import CountResult, MentionResult

R = TypeVar("R", CountResult, MentionResult)


@dataclass(frozen=True)
class Timed(Generic[R]):
    """A sequence result and the time the backend spent on it."""

    result: R
    latency_s: float


@dataclass
class Extracted:
    counts: list[Timed[CountResult]] = field(default_factory=list)
    mentions: list[Timed[MentionResult]] = field(default_factory=list)
    latency_s: float = 0.0


class Backend(Protocol):
    name: str
    model_name: str
    schemas: tuple[str, ...]  # the label schemas the model serves; requests for others are refused
    model_version: str

    async def start(self) -> Self: ...  # idempotent (padellm_ner.lifecycle.AsyncComponent)

    async def stop(self) -> None: ...  # idempotent

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def healthy(self) -> bool: ...  # whether it can decode now (the worker's health follows it)

    async def count(self, document_id: str, text: str, schema: str, label: str) -> Timed[CountResult]: ...

    async def mention(
        self, document_id: str, text: str, schema: str, label: str, count: int, k: int
    ) -> Timed[MentionResult]: ...

    async def extract(self, document_id: str, text: str, schema: str, labels: Sequence[str]) -> Extracted: ...
