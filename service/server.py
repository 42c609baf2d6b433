"""The public gRPC NER service (padellm.v1.NerService) on the orchestrator."""

from __future__ import annotations

import asyncio
import logging

import grpc

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.validation import (
    DEFAULT_MAX_TEXT_CHARS,
    InvalidInput,
    check_id,
    check_labels,
    check_schema,
    check_text,
)

from . import metrics
from .orchestrator import Orchestrator

log = logging.getLogger(__name__)
SERVICE_NAME = ner_pb2.DESCRIPTOR.services_by_name["NerService"].full_name


class NerService(ner_pb2_grpc.NerServiceServicer):
    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        default_schema: str = "conll03",
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        max_batch: int = 256,
        stream_window: int = 32,
    ):
        self.orchestrator = orchestrator
        self.default_schema = default_schema
        self.max_text_chars = max_text_chars
        self.max_batch = max_batch
        self.stream_window = stream_window

    def _validate(self, request: ner_pb2.RecognizeRequest):
        check_id(request.id)
        check_text(request.text, self.max_text_chars)
        schema = check_schema(request.schema or self.default_schema)
        return schema, check_labels(schema, list(request.labels))

    async def _recognize(self, request: ner_pb2.RecognizeRequest) -> ner_pb2.EntityRecord:
        schema, labels = self._validate(request)
        record = await self.orchestrator.recognize(request.id, request.text, schema, labels)
        return record.to_proto()

    async def _guard(self, method: str, context, work):
        try:
            result = await work()
            metrics.REQUESTS.labels(method, "OK").inc()
            return result
        except InvalidInput as error:
            metrics.REQUESTS.labels(method, "INVALID_ARGUMENT").inc()
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except grpc.aio.AioRpcError as error:  # a worker call failed after its retries
            metrics.REQUESTS.labels(method, error.code().name).inc()
            metrics.ERRORS.labels("worker").inc()
            await context.abort(error.code(), f"model worker call failed: {error.details()}")

    async def Recognize(self, request, context):
        return await self._guard("Recognize", context, lambda: self._recognize(request))

    async def RecognizeBatch(self, request, context):
        async def work():
            if len(request.documents) > self.max_batch:
                raise InvalidInput(f"{len(request.documents)} documents in one batch; the limit is {self.max_batch}")
            for index, document in enumerate(request.documents):  # reject a bad batch before any work
                try:
                    self._validate(document)
                except InvalidInput as error:
                    raise InvalidInput(f"document {index}: {error}") from None
            records = await asyncio.gather(*(self._recognize(d) for d in request.documents))
            return ner_pb2.RecognizeBatchResponse(records=records)

        return await self._guard("RecognizeBatch", context, work)

    async def RecognizeStream(self, request_iterator, context):
        """Requests are processed concurrently (at most `stream_window` at a time); records leave in order."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=self.stream_window)

        async def feed():
            async for request in request_iterator:
                try:
                    self._validate(request)
                except InvalidInput as error:
                    await pending.put(error)
                    return
                await pending.put(asyncio.ensure_future(self._recognize(request)))
            await pending.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    break
                if isinstance(item, InvalidInput):
                    metrics.REQUESTS.labels("RecognizeStream", "INVALID_ARGUMENT").inc()
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(item))
                try:
                    yield await item
                except grpc.aio.AioRpcError as error:
                    metrics.REQUESTS.labels("RecognizeStream", error.code().name).inc()
                    await context.abort(error.code(), f"model worker call failed: {error.details()}")
            metrics.REQUESTS.labels("RecognizeStream", "OK").inc()
        finally:
            feeder.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if isinstance(item, asyncio.Future):
                    item.cancel()


def add_to_server(service: NerService):
    return lambda server: ner_pb2_grpc.add_NerServiceServicer_to_server(service, server)
