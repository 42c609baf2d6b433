"""The model worker's gRPC server (padellm.v1.ModelWorker) over a pluggable backend."""

from __future__ import annotations

import logging
import time

import grpc

from padellm.v1 import worker_pb2, worker_pb2_grpc
from padellm_ner.core import DEFAULT_MAX_COUNT
from padellm_ner.core.aggregate import FinishReason, parse_result
from padellm_ner.core.segment import estimate_tokens
from padellm_ner.validation import DEFAULT_MAX_WINDOW_CHARS, DEFAULT_MAX_WINDOW_TOKENS, InvalidInput, check_text

from .backends.base import Backend, BackendError

log = logging.getLogger(__name__)
SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["ModelWorker"].full_name


_FINISH = {FinishReason.STOP: worker_pb2.FINISH_REASON_STOP, FinishReason.LENGTH: worker_pb2.FINISH_REASON_LENGTH}


class WorkerService(worker_pb2_grpc.ModelWorkerServicer):
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

    async def _call(self, context: grpc.aio.ServicerContext, request, make):
        try:
            self._check(request.text, request.schema)
            return await make()
        except InvalidInput as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except BackendError as error:
            await context.abort(getattr(grpc.StatusCode, error.status, grpc.StatusCode.INTERNAL), str(error))

    def _count_response(self, timed) -> worker_pb2.CountResponse:
        c = timed.result
        parsed = parse_result(c, self.max_count)
        return worker_pb2.CountResponse(
            label=c.label,
            raw=c.raw,
            count=parsed.value,
            count_status=parsed.status.value,
            logprob=c.logprob,
            generated_tokens=c.generated_tokens,
            latency_ms=timed.latency_s * 1000,
            finish_reason=_FINISH[c.finish],
        )

    @staticmethod
    def _mention_response(timed) -> worker_pb2.MentionResponse:
        m = timed.result
        return worker_pb2.MentionResponse(
            label=m.label,
            k=m.k,
            raw=m.raw,
            logprob=m.logprob,
            generated_tokens=m.generated_tokens,
            latency_ms=timed.latency_s * 1000,
            finish_reason=_FINISH[m.finish],
        )

    async def Count(self, request, context):
        async def make():
            return self._count_response(
                await self.backend.count(request.document_id, request.text, request.schema, request.label)
            )

        return await self._call(context, request, make)

    async def Mention(self, request, context):
        async def make():
            return self._mention_response(
                await self.backend.mention(
                    request.document_id, request.text, request.schema, request.label, request.count, request.k
                )
            )

        return await self._call(context, request, make)

    async def Extract(self, request, context):
        async def make():
            started = time.perf_counter()
            extracted = await self.backend.extract(
                request.document_id, request.text, request.schema, list(request.labels)
            )
            return worker_pb2.ExtractResponse(
                counts=[self._count_response(c) for c in extracted.counts],
                mentions=[self._mention_response(m) for m in extracted.mentions],
                latency_ms=(time.perf_counter() - started) * 1000,
            )

        return await self._call(context, request, make)

    async def Info(self, request, context):
        return worker_pb2.InfoResponse(
            backend=self.backend.name,
            model=self.backend.model_name,
            model_version=self.backend.model_version,
            schemas=list(self.backend.schemas),
            max_text_chars=self.max_text_chars,
            max_window_tokens=self.max_window_tokens,
        )


def add_to_server(service: WorkerService):
    return lambda server: worker_pb2_grpc.add_ModelWorkerServicer_to_server(service, server)
