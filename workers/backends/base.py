"""What a backend offers the worker server: count and mention sequences, and whole documents (Batch mode).

Requests carry label tags; backends build prompts with the core's templates, so every backend sends the
same bytes a released PaDeLLM checkpoint expects. Errors that the caller should see with a gRPC status are
raised as `padellm_ner.errors.PadellmError` with their status code (invalid input as `InvalidInput`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Generic, Protocol, Self, TypeVar

from padellm_ner.core import CountResult, MentionResult
from padellm_ner.core.plan import DocumentPlan
from padellm_ner.validation import check_labels, check_schema

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
    window_limit: int | None  # the largest window (estimated tokens) the model can read, where it has one

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


# When the gRPC call being served must be answered (time.monotonic()); set by the worker's servicer, read by the
# backends that retry, so that no retry outlives its caller.
CALL_DEADLINE: ContextVar[float | None] = ContextVar("call_deadline", default=None)


def time_left(default_s: float) -> float:
    """Seconds until the current call's deadline, at most `default_s` (all of it where the call has none)."""
    deadline = CALL_DEADLINE.get()
    return default_s if deadline is None else max(0.0, min(default_s, deadline - time.monotonic()))


async def extract_by_calls(
    backend: Backend, document_id: str, text: str, schema: str, labels: Sequence[str], max_count: int
) -> Extracted:
    """Both steps of one window through a backend's own count and mention calls, as the core plans them: each
    label's mentions asked as soon as its count is known (a server batches whatever is in flight)."""
    label_schema = check_schema(schema)
    plan = DocumentPlan.one_window(text, label_schema, check_labels(label_schema, list(labels)), max_count)
    started = time.perf_counter()
    extracted = Extracted()

    async def label_sequences(label: str) -> None:
        count = await backend.count(document_id, text, schema, label)
        extracted.counts.append(count)
        extracted.mentions.extend(
            await asyncio.gather(
                *(
                    backend.mention(document_id, text, schema, ask.label, ask.count, ask.k)
                    for ask in plan.mention_asks(count.result)
                )
            )
        )

    await asyncio.gather(*(label_sequences(ask.label) for ask in plan.count_asks()))
    extracted.latency_s = time.perf_counter() - started
    return extracted
