"""The public gRPC NER service (padellm.v1.NerService) on the orchestrator: thin; its errors become statuses in
the server's interceptor (`padellm_ner.grpc_common.ErrorInterceptor`), which also counts every call's outcome."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from padellm.v1 import ner_pb2, ner_pb2_grpc
from padellm_ner.core import DEFAULT_SCHEMA, LabelSchema
from padellm_ner.errors import ErrorCode, PadellmError
from padellm_ner.grpc_common import status_of
from padellm_ner.validation import (
    DEFAULT_MAX_TEXT_CHARS,
    InvalidInput,
    check_id,
    check_labels,
    check_schema,
    check_text,
)

from . import metrics
from .orchestrator import Orchestrator, caller_deadline

log = logging.getLogger(__name__)
SERVICE_NAME = ner_pb2.DESCRIPTOR.services_by_name["NerService"].full_name
MAX_BATCH = 256
MAX_DOCUMENTS = 32  # documents read at once per replica; more are refused at once (RESOURCE_EXHAUSTED)
RETRY_AFTER_S = 1.0  # what a refused caller is told to wait (google.rpc.RetryInfo)


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
        max_documents: int = MAX_DOCUMENTS,
        stream_window: int = 32,
    ):
        check_schema(default_schema)
        self.orchestrator = orchestrator
        self.default_schema = default_schema
        self.max_text_chars = max_text_chars
        self.max_batch = max_batch
        self.max_documents = max_documents
        self.stream_window = stream_window
        self.documents = 0  # admitted and not yet answered

    @contextlib.contextmanager
    def _admitted(self, count: int = 1):
        """Admission control: at most `max_documents` documents at once (a larger batch only alone); the rest is
        refused at once with RESOURCE_EXHAUSTED and a retry delay, rather than queued past its deadline."""
        if self.documents and self.documents + count > self.max_documents:
            raise PadellmError(
                f"the service is reading {self.documents} documents, its limit is {self.max_documents}; "
                f"retry in {RETRY_AFTER_S:g} s",
                code=ErrorCode.RESOURCE_EXHAUSTED,
                retry_after_s=RETRY_AFTER_S,
            )
        self.documents += count
        try:
            yield
        finally:
            self.documents -= count

    def _validate(self, document: ner_pb2.Document, where: str) -> tuple[LabelSchema, list[str]]:
        try:
            check_id(document.id)
            check_text(document.text, self.max_text_chars)
            schema = check_schema(document.schema or self.default_schema)
            return schema, check_labels(schema, list(document.labels))
        except InvalidInput as error:
            raise error.in_field(where) from None

    async def _recognize(
        self, document: ner_pb2.Document, schema: LabelSchema, labels: list[str]
    ) -> ner_pb2.EntityRecord:
        """A validated document (`_validate` gave its schema and labels) through the orchestrator."""
        record = await self.orchestrator.recognize(document.id, document.text, schema, labels)
        return record.to_proto()

    async def Recognize(self, request, context):
        checked = self._validate(request.document, "document")
        with self._admitted(), caller_deadline(context.time_remaining()):
            return ner_pb2.RecognizeResponse(record=await self._recognize(request.document, *checked))

    async def RecognizeBatch(self, request, context):
        if len(request.documents) > self.max_batch:
            raise InvalidInput(
                f"{len(request.documents)} documents in one batch; the limit is {self.max_batch}", field="documents"
            )
        # a bad batch is rejected before any work
        checked = [self._validate(document, f"documents[{i}]") for i, document in enumerate(request.documents)]
        with self._admitted(len(request.documents)), caller_deadline(context.time_remaining()):
            records = await asyncio.gather(*(self._recognize(d, *c) for d, c in zip(request.documents, checked)))
        return ner_pb2.RecognizeBatchResponse(records=records)

    async def _stream_item(
        self, index: int, request: ner_pb2.RecognizeStreamRequest
    ) -> ner_pb2.RecognizeStreamResponse:
        """One request of a stream, its failure included: a stream goes on past a bad or failed document."""
        response = ner_pb2.RecognizeStreamResponse(index=index, id=request.document.id)
        try:
            checked = self._validate(request.document, "document")
            with self._admitted():
                response.record.CopyFrom(await self._recognize(request.document, *checked))
            return response
        except (PadellmError, grpc.aio.AioRpcError) as error:
            code, message = status_of(error)
            field = error.field if isinstance(error, PadellmError) else None
        response.error.CopyFrom(ner_pb2.ItemError(code=code.value[0], message=message, field=field or ""))
        observe("RecognizeStream.item", code.name, None)
        return response

    async def RecognizeStream(self, request_iterator, context):
        """Requests are processed concurrently (at most `stream_window` at a time); responses leave in order, one
        per request; a request that fails gets an error response and the stream goes on."""
        pending: asyncio.Queue = asyncio.Queue(maxsize=self.stream_window)

        async def feed():
            index = 0
            async for request in request_iterator:
                await pending.put(asyncio.ensure_future(self._stream_item(index, request)))
                index += 1
            await pending.put(None)

        with caller_deadline(context.time_remaining()):  # the stream's items inherit it
            feeder = asyncio.create_task(feed())
        try:
            while (item := await pending.get()) is not None:
                yield await item
            await feeder  # an error reading the requests ends the stream with it
        finally:
            feeder.cancel()
            while not pending.empty():
                item = pending.get_nowait()
                if isinstance(item, asyncio.Future):
                    item.cancel()

    async def ListModels(self, request, context):
        models = self.orchestrator.served_models()
        return ner_pb2.ListModelsResponse(
            models=[ner_pb2.ServedModel(**vars(model)) for model in models],
            limits=ner_pb2.Limits(
                max_text_chars=self.max_text_chars,
                max_batch=self.max_batch,
                max_window_tokens=self.orchestrator.config.window_policy.largest,
            ),
            default_schema=self.default_schema,
            unreachable_workers=self.orchestrator.unreachable_workers(),
        )


def add_to_server(service: NerService):
    return lambda server: ner_pb2_grpc.add_NerServiceServicer_to_server(service, server)
