"""The asyncio orchestrator: one document in, one entity record out.

A document is planned by the core (`padellm_ner.core.plan`): windows of whole sentences, a Count per
(window, label), a Mention per (window, label, k). Multi mode (the paper's PaDeLLM-Multi as a distributed
system) issues all of them as concurrent calls, spread over the worker endpoints window by window (a window's
calls go to one endpoint first, so its prefix cache serves them); a label's Mention calls start as soon as its
count is known (`MentionStart.PER_LABEL`) or once every count is (`AFTER_COUNTS`). Batch mode (PaDeLLM-Batch):
one Extract call per window, concurrently. The plan then merges the windows. Every call has a deadline; calls
in flight are bounded by a semaphore shared by all documents; retries happen in the worker pool. Latency is
reported as wall time and as the paper accounts it (the slowest sequence: its count plus its mention, as
measured inside the workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import Enum

from padellm.v1 import worker_pb2
from padellm_ner.core import DEFAULT_MAX_COUNT, CountResult, DedupPolicy, LabelSchema, MentionResult
from padellm_ner.core.plan import CountAsk, DocumentPlan, MentionAsk
from padellm_ner.core.segment import Window, WindowPolicy
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.wire import finish_of

from . import metrics
from .records import EntityRecord, Timings
from .worker_pool import WorkerPool


class Mode(str, Enum):
    MULTI = "multi"  # PaDeLLM-Multi: a Count call per (window, label), a Mention call per (window, label, k)
    BATCH = "batch"  # PaDeLLM-Batch: one Extract call per window


MULTI, BATCH = Mode.MULTI, Mode.BATCH
_PLAN_ON_THREAD_CHARS = 5_000


_CALLER_DEADLINE: ContextVar[float | None] = ContextVar("caller_deadline", default=None)
_DOCUMENT_SLOTS: ContextVar[asyncio.Semaphore | None] = ContextVar("document_slots", default=None)


@contextlib.contextmanager
def caller_deadline(remaining_s: float | None):
    """Worker calls made inside (and in the tasks started inside) end by the caller's deadline: each gets the
    shorter of its own deadline and the caller's remaining time, so that no retry outlives the caller."""
    token = _CALLER_DEADLINE.set(None if remaining_s is None else time.monotonic() + remaining_s)
    try:
        yield
    finally:
        _CALLER_DEADLINE.reset(token)


class MentionStart(str, Enum):
    PER_LABEL = "per-label"  # a label's mentions are asked as soon as its count is known
    AFTER_COUNTS = "after-counts"  # every mention is asked once every count of the document is known


@dataclass
class OrchestratorConfig:
    mode: Mode = Mode.MULTI
    call_deadline_s: float = 30.0
    max_in_flight: int = 256
    # A document's share of them: a long document cannot hold every call slot while short ones wait for theirs.
    max_in_flight_per_document: int = 32
    max_count: int = DEFAULT_MAX_COUNT
    dedup: str = DedupPolicy.KEEP_MAX.value
    model: str = "unknown"
    model_version: str = ""
    window_policy: WindowPolicy = field(default_factory=WindowPolicy)
    mention_start: MentionStart = MentionStart.PER_LABEL
    # A document's budget, from its size: at least budget_min_s, budget_per_window_s per window (0: none). Its
    # worker calls end with it (as with a caller's deadline, whichever comes first): no document occupies the
    # workers for longer, however long it is.
    budget_per_window_s: float = 2.0
    budget_min_s: float = 30.0


def _count_result(response: worker_pb2.CountResponse, window: int) -> CountResult:
    return CountResult(
        response.label,
        response.raw,
        response.logprob,
        response.generated_tokens,
        finish_of(response.finish_reason),
        window,
    )


def _mention_result(response: worker_pb2.MentionResponse, window: int) -> MentionResult:
    return MentionResult(
        response.label,
        response.k,
        response.raw,
        response.logprob,
        response.generated_tokens,
        finish_of(response.finish_reason),
        window,
    )


@dataclass
class _Decoded:
    """What the calls of one document returned, with the latency of each sequence inside the workers."""

    counts: list[CountResult] = field(default_factory=list)
    mentions: list[MentionResult] = field(default_factory=list)
    count_ms: dict[tuple[int, str], float] = field(default_factory=dict)
    mention_ms: list[float] = field(default_factory=list)  # one per mention, in the order of `mentions`
    counts_done: float = 0.0  # perf_counter when the last count arrived
    models: set[tuple[str, str]] = field(default_factory=set)  # (model, version) of the workers that answered

    def answered_by(self, response: worker_pb2.CountResponse | worker_pb2.MentionResponse) -> None:
        if response.model:  # workers before the field: the service's own idea of the model stands
            self.models.add((response.model, response.model_version))

    def model(self, fallback: tuple[str, str]) -> tuple[str, str]:
        """The model and version that decoded the document, as its workers said (during a rollout a document's
        calls may meet two versions: both are named)."""
        if not self.models:
            return fallback
        names, versions = zip(*sorted(self.models))
        return ",".join(dict.fromkeys(names)), ",".join(versions)


_BACKEND_NAMES = {
    worker_pb2.BACKEND_EMBEDDED: "embedded",
    worker_pb2.BACKEND_TGI: "tgi",
    worker_pb2.BACKEND_VLLM: "vllm",
}


@dataclass
class ServedModel:
    """A model that workers serve, as the discovery call lists it."""

    model: str
    model_version: str
    schema: str
    language: str
    labels: list[str]
    backend: str
    workers: int


class Orchestrator:
    def __init__(self, pool: WorkerPool, config: OrchestratorConfig | None = None):
        self.pool = pool
        config = config or OrchestratorConfig()
        self.config = replace(config, mode=Mode(config.mode))  # a mode given by name is checked here
        self._slots = asyncio.Semaphore(self.config.max_in_flight)

    def _within_budget(self, windows: int):
        """The document's budget as a deadline of its worker calls, unless the caller's comes first."""
        if not self.config.budget_per_window_s:
            return contextlib.nullcontext()
        budget = max(self.config.budget_min_s, self.config.budget_per_window_s * windows)
        current = _CALLER_DEADLINE.get()
        if current is not None and current - time.monotonic() <= budget:
            return contextlib.nullcontext()
        return caller_deadline(budget)

    def _timeout(self) -> float:
        """A worker call's deadline: its own, cut to what is left of the caller's (`caller_deadline`)."""
        deadline = _CALLER_DEADLINE.get()
        if deadline is None:
            return self.config.call_deadline_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PadellmError("the caller's deadline has passed", code=ErrorCode.DEADLINE_EXCEEDED)
        return min(self.config.call_deadline_s, remaining)

    async def _bounded(self, affinity: str, schema: str, invoke):
        document_slots = _DOCUMENT_SLOTS.get()
        async with document_slots or contextlib.nullcontext(), self._slots:
            return await self.pool.call(affinity, invoke, schema)

    def served_models(self) -> list[ServedModel]:
        """The models the workers said they serve, one per (schema, model, version), by schema."""
        models: dict[tuple[str, str, str], ServedModel] = {}
        for schema, endpoints in sorted(self.pool.served().items()):
            for endpoint in endpoints:
                info = endpoint.info
                assert info is not None
                key = (schema, info.model, info.model_version)
                if key in models:
                    models[key].workers += 1
                    continue
                described = {s.name: s for s in info.schema_info}.get(schema)
                models[key] = ServedModel(
                    model=info.model,
                    model_version=info.model_version,
                    schema=schema,
                    language=described.language if described else "",
                    labels=list(described.labels) if described else [],
                    backend=_BACKEND_NAMES.get(info.backend, "unspecified"),
                    workers=1,
                )
        return list(models.values())

    def unreachable_workers(self) -> int:
        """Worker endpoints that have not said what they serve."""
        return sum(1 for endpoint in self.pool.endpoints if endpoint.info is None)

    def plan(self, text: str, schema: LabelSchema, labels: Sequence[str] | None = None) -> DocumentPlan:
        return DocumentPlan.of(text, schema, labels, self.config.window_policy, self.config.max_count)

    async def recognize(
        self, document_id: str, text: str, schema: LabelSchema, labels: Sequence[str] | None = None
    ) -> EntityRecord:
        started = time.perf_counter()
        if len(text) > _PLAN_ON_THREAD_CHARS:  # segmenting 100,000 characters takes tens of ms: off the event loop
            plan = await asyncio.to_thread(self.plan, text, schema, labels)
        else:
            plan = self.plan(text, schema, labels)
        slots = _DOCUMENT_SLOTS.set(asyncio.Semaphore(self.config.max_in_flight_per_document))
        try:
            with self._within_budget(len(plan.windows)):
                if self.config.mode is Mode.BATCH:
                    decoded = await self._extract_windows(document_id, plan)
                else:
                    decoded = await self._count_and_mention(document_id, plan)
        finally:
            _DOCUMENT_SLOTS.reset(slots)
        mention_done = time.perf_counter()
        prediction = plan.merge(decoded.counts, decoded.mentions, self.config.dedup)
        wall = time.perf_counter() - started
        paper = max(
            [decoded.count_ms[(m.window, m.label)] + ms for m, ms in zip(decoded.mentions, decoded.mention_ms)]
            + list(decoded.count_ms.values()),
            default=0.0,
        )
        timings = Timings(
            wall_ms=wall * 1000,
            count_step_ms=(decoded.counts_done - started) * 1000,
            mention_step_ms=(mention_done - decoded.counts_done) * 1000,
            paper_latency_ms=paper,
        )
        metrics.observe_document(self.config.mode.value, timings, decoded.counts, decoded.mentions, prediction)
        model, model_version = decoded.model((self.config.model, self.config.model_version))
        return EntityRecord.from_prediction(
            document_id,
            prediction,
            model=model,
            model_version=model_version,
            schema=plan.schema.name,
            timings=timings,
        )

    # --- multi mode ---------------------------------------------------------------------------------------------

    def _count(self, document_id: str, plan: DocumentPlan, ask: CountAsk):
        window = plan.windows[ask.window]
        request = worker_pb2.CountRequest(
            document_id=document_id, text=window.text, schema=plan.schema.name, label=ask.label
        )
        return self._bounded(
            _affinity(document_id, window), plan.schema.name, lambda stub: stub.Count(request, timeout=self._timeout())
        )

    def _mention(self, document_id: str, plan: DocumentPlan, ask: MentionAsk):
        window = plan.windows[ask.window]
        request = worker_pb2.MentionRequest(
            document_id=document_id,
            text=window.text,
            schema=plan.schema.name,
            label=ask.label,
            count=ask.count,
            k=ask.k,
        )
        return self._bounded(
            _affinity(document_id, window),
            plan.schema.name,
            lambda stub: stub.Mention(request, timeout=self._timeout()),
        )

    async def _count_and_mention(self, document_id: str, plan: DocumentPlan) -> _Decoded:
        decoded = _Decoded()

        async def count(ask: CountAsk) -> CountResult:
            response = await self._count(document_id, plan, ask)
            result = _count_result(response, ask.window)
            decoded.answered_by(response)
            decoded.counts.append(result)
            decoded.count_ms[(ask.window, ask.label)] = response.latency_ms
            decoded.counts_done = time.perf_counter()
            return result

        async def mentions(asks: list[MentionAsk]) -> None:
            responses = await _all(self._mention(document_id, plan, ask) for ask in asks)
            for ask, response in zip(asks, responses):
                decoded.answered_by(response)
                decoded.mentions.append(_mention_result(response, ask.window))
                decoded.mention_ms.append(response.latency_ms)

        async def count_then_mentions(ask: CountAsk) -> None:
            await mentions(plan.mention_asks(await count(ask)))

        if self.config.mention_start is MentionStart.PER_LABEL:
            await _all(count_then_mentions(ask) for ask in plan.count_asks())
        else:
            counts = await _all(count(ask) for ask in plan.count_asks())
            await mentions(plan.all_mention_asks(counts))
        return decoded

    # --- batch mode ---------------------------------------------------------------------------------------------

    async def _extract_windows(self, document_id: str, plan: DocumentPlan) -> _Decoded:
        decoded = _Decoded()

        async def extract(window: Window) -> None:
            request = worker_pb2.ExtractRequest(
                document_id=document_id, text=window.text, schema=plan.schema.name, labels=list(plan.labels)
            )
            response = await self._bounded(
                _affinity(document_id, window),
                plan.schema.name,
                lambda stub: stub.Extract(request, timeout=self._timeout()),
            )
            for c in response.counts:
                decoded.answered_by(c)
                decoded.counts.append(_count_result(c, window.index))
                decoded.count_ms[(window.index, c.label)] = c.latency_ms
            for m in response.mentions:
                decoded.answered_by(m)
                decoded.mentions.append(_mention_result(m, window.index))
                decoded.mention_ms.append(m.latency_ms)

        await _all(extract(window) for window in plan.windows)
        decoded.counts_done = time.perf_counter()
        return decoded


def _affinity(document_id: str, window: Window) -> str:
    """The key that picks a call's endpoint: per window, so a window's calls meet its prefix cache and the windows
    of a long document spread over the workers."""
    return f"{document_id}#{window.index}"


async def _all(coroutines):
    """Every coroutine, concurrently; the first failure cancels the rest (no orphaned calls) and is raised."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
