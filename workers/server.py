"""The model worker's gRPC servicer (padellm.v1.ModelWorkerService) over a pluggable backend: thin, its errors
mapped to statuses by the server's interceptor (`padellm_ner.grpc_common.ErrorInterceptor`)."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

from padellm.v1 import worker_pb2, worker_pb2_grpc
from padellm_ner.core import DEFAULT_MAX_COUNT, get_schema
from padellm_ner.core.aggregate import parse_result
from padellm_ner.core.segment import estimate_tokens
from padellm_ner.validation import DEFAULT_MAX_WINDOW_CHARS, DEFAULT_MAX_WINDOW_TOKENS, InvalidInput, check_text
from padellm_ner.wire import COUNT_STATUS_TO_PROTO, FINISH_TO_PROTO

from . import metrics
from .backends.base import CALL_DEADLINE, Backend
from .config import BackendKind

log = logging.getLogger(__name__)
SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["ModelWorkerService"].full_name
_BACKEND = {
    BackendKind.EMBEDDED.value: worker_pb2.BACKEND_EMBEDDED,
    BackendKind.TGI.value: worker_pb2.BACKEND_TGI,
    BackendKind.VLLM.value: worker_pb2.BACKEND_VLLM,
}


class WorkerService(worker_pb2_grpc.ModelWorkerServiceServicer):
    """Every call carries one window of a document: texts over the window limits are refused, as are schemas the
    backend's model was not trained for."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_text_chars: int = DEFAULT_MAX_WINDOW_CHARS,
        max_window_tokens: int = DEFAULT_MAX_WINDOW_TOKENS,
        max_count: int = DEFAULT_MAX_COUNT,
    ):
        self.backend = backend
        self.max_text_chars = max_text_chars
        if backend.window_limit is not None and backend.window_limit < max_window_tokens:
            log.info(
                "windows of at most %d estimated tokens: what %s can read", backend.window_limit, backend.model_name
            )
            max_window_tokens = backend.window_limit
        self.max_window_tokens = max_window_tokens
        self.max_count = max_count

    def _check(self, text: str, schema: str) -> None:
        check_text(text, self.max_text_chars)
        tokens = estimate_tokens(text)
        if tokens > self.max_window_tokens:
            raise InvalidInput(
                f"text has about {tokens} tokens; a worker call carries one window of at most "
                f"{self.max_window_tokens} (send whole documents to the NER service, which splits them)"
            )
        if schema not in self.backend.schemas:
            raise InvalidInput(
                f"model {self.backend.model_name} serves schema(s) {', '.join(self.backend.schemas)}; "
                f"{schema!r} is not one of them"
            )

    def _count_response(self, timed) -> worker_pb2.CountResponse:
        c = timed.result
        parsed = parse_result(c, self.max_count)
        return worker_pb2.CountResponse(
            label=c.label,
            raw=c.raw,
            count=parsed.value,
            count_status=COUNT_STATUS_TO_PROTO[parsed.status],
            logprob=c.logprob,
            generated_tokens=c.generated_tokens,
            latency_ms=timed.latency_s * 1000,
            finish_reason=FINISH_TO_PROTO[c.finish],
            model=self.backend.model_name,
            model_version=self.backend.model_version,
        )

    def _mention_response(self, timed) -> worker_pb2.MentionResponse:
        m = timed.result
        return worker_pb2.MentionResponse(
            label=m.label,
            k=m.k,
            raw=m.raw,
            logprob=m.logprob,
            generated_tokens=m.generated_tokens,
            latency_ms=timed.latency_s * 1000,
            finish_reason=FINISH_TO_PROTO[m.finish],
            model=self.backend.model_name,
            model_version=self.backend.model_version,
        )

    async def Count(self, request, context):
        self._check(request.text, request.schema)
        with _deadline_of(context):
            timed = await self.backend.count(request.document_id, request.text, request.schema, request.label)
        return self._count_response(timed)

    async def Mention(self, request, context):
        self._check(request.text, request.schema)
        with _deadline_of(context):
            timed = await self.backend.mention(
                request.document_id, request.text, request.schema, request.label, request.count, request.k
            )
        return self._mention_response(timed)

    async def Extract(self, request, context):
        self._check(request.text, request.schema)
        started = time.perf_counter()
        with _deadline_of(context):
            extracted = await self.backend.extract(
                request.document_id, request.text, request.schema, list(request.labels)
            )
        return worker_pb2.ExtractResponse(
            counts=[self._count_response(c) for c in extracted.counts],
            mentions=[self._mention_response(m) for m in extracted.mentions],
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def Info(self, request, context):
        return worker_pb2.InfoResponse(
            backend=_BACKEND.get(self.backend.name, worker_pb2.BACKEND_UNSPECIFIED),
            model=self.backend.model_name,
            model_version=self.backend.model_version,
            schemas=list(self.backend.schemas),
            max_text_chars=self.max_text_chars,
            max_window_tokens=self.max_window_tokens,
            schema_info=[_schema_info(name) for name in self.backend.schemas],
        )


def _schema_info(name: str) -> worker_pb2.SchemaInfo:
    schema = get_schema(name)
    return worker_pb2.SchemaInfo(name=schema.name, language=schema.language, labels=list(schema.labels))


@contextmanager
def _deadline_of(context):
    """While a call is served: its gRPC deadline as the backends' CALL_DEADLINE, and it counts as in flight."""
    remaining = context.time_remaining() if context is not None else None
    token = CALL_DEADLINE.set(None if remaining is None else time.monotonic() + remaining)
    metrics.IN_FLIGHT.inc()
    try:
        yield
    finally:
        metrics.IN_FLIGHT.dec()
        CALL_DEADLINE.reset(token)


def add_to_server(service: WorkerService):
    return lambda server: worker_pb2_grpc.add_ModelWorkerServiceServicer_to_server(service, server)
