"""The public gRPC NER service (padellm.v1.NerService) on the orchestrator: thin; its errors become statuses in
the server's interceptor (`padellm_ner.grpc_common.ErrorInterceptor`), which also counts every call's outcome."""

from __future__ import annotations

import asyncio
import logging

import grpc

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.core import DEFAULT_SCHEMA, LabelSchema
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
MAX_BATCH = 256


def observe(method: str, code: str, error: BaseException | None) -> None:
    """The interceptor's view of each call: counted by method and status; failed worker calls also as errors."""
    metrics.REQUESTS.labels(method, code).inc()
    if isinstance(error, grpc.aio.AioRpcError):  # a worker call that failed after its retries
        metrics.ERRORS.labels("worker").inc()


class NerService(ner_pb2_grpc.NerServiceServicer):
    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        default_schema: str = DEFAULT_SCHEMA,
        max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
        max_batch: int = MAX_BATCH,
        stream_window: int = 32,
    ):
        self.orchestrator = orchestrator
        self.default_schema = default_schema
        self.max_text_chars = max_text_chars
        self.max_batch = max_batch
        self.stream_window = stream_window

    def _validate(self, document: ner_pb2.Document, where: str) -> tuple[LabelSchema, list[str]]:
        try:
            check_id(document.id)
            check_text(document.text, self.max_text_chars)
            schema = check_schema(document.schema or self.default_schema)
            return schema, check_labels(schema, list(document.labels))
        except InvalidInput as error:
            raise error.in_field(where) from None

    async def _recognize(self, document: ner_pb2.Document, where: str) -> ner_pb2.EntityRecord:
        schema, labels = self._validate(document, where)
        record = await self.orchestrator.recognize(document.id, document.text, schema, labels)
        return record.to_proto()

    async def Recognize(self, request, context):
        return ner_pb2.RecognizeResponse(record=await self._recognize(request.document, "document"))

    async def RecognizeBatch(self, request, context):
        if len(request.documents) > self.max_batch:
            raise InvalidInput(
                f"{len(request.documents)} documents in one batch; the limit is {self.max_batch}", field="documents"
            )
        for index, document in enumerate(request.documents):  # reject a bad batch before any work
            self._validate(document, f"documents[{index}]")
        records = await asyncio.gather(
            *(self._recognize(d, f"documents[{i}]") for i, d in enumerate(request.documents))
        )
        return ner_pb2.RecognizeBatchResponse(records=records)

    async def RecognizeStream(self, request_iterator, context):
        """Requests are processed concurrently (at most `stream_window` at a time); records leave in order. An
        invalid request ends the stream with INVALID_ARGUMENT after the records of the requests before it."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=self.stream_window)

        async def feed():
            index = 0
            async for request in request_iterator:
                try:
                    self._validate(request.document, "document")
                except InvalidInput as error:
                    await pending.put(InvalidInput(f"request {index}: {error}", field=error.field))
                    return
                await pending.put(asyncio.ensure_future(self._recognize(request.document, "document")))
                index += 1
            await pending.put(None)

        feeder = asyncio.create_task(feed())
        try:
            while (item := await pending.get()) is not None:
                if isinstance(item, InvalidInput):
                    raise item
                yield ner_pb2.RecognizeStreamResponse(record=await item)
        finally:
            feeder.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if isinstance(item, asyncio.Future):
                    item.cancel()


def add_to_server(service: NerService):
    return lambda server: ner_pb2_grpc.add_NerServiceServicer_to_server(service, server)
