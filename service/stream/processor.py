"""The stream processor: an aiokafka consumer group -> the orchestrator -> a producer, losing nothing.

At-least-once (default): documents are processed concurrently; a partition's offset is committed only up to
the first record whose output (or dead letter) is not yet acknowledged by the broker (acks=all, idempotent
producer), so a crash re-delivers, never skips. Outputs are keyed by document id, so a re-delivery overwrites
rather than adds for consumers that read by key.

Exactly-once (`exactly_once=True`): each polled batch is processed, then its outputs, dead letters and the
consumer offsets are written in one Kafka transaction (send_offsets_to_transaction); consumers that read the
output with isolation_level=read_committed see every document exactly once. A restarted instance with the
same transactional id fences its predecessor and aborts its open transaction.

Backpressure: at most `max_in_flight` documents in total and `max_in_flight_per_partition` per partition; a
partition at its limit is paused and resumed when it drains. When the workers are overloaded or unreachable
(RESOURCE_EXHAUSTED, UNAVAILABLE after the pool's retries), all partitions are paused for a capped back-off and
the document is tried again; nothing is dropped. A document past its deadline is tried DEADLINE_ATTEMPTS times,
then dead-lettered, so that no document stalls the stream. Every record gets an outcome: bad input, a deadline
and any unexpected error end in a dead letter with the reason and the exception type. `stop()` (on SIGTERM): stop fetching, finish in-flight documents for up to
`shutdown_grace_s` (the rest stays uncommitted), commit, close.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from padellm_ner.core import get_schema
from padellm_ner.errors import PadellmError
from padellm_ner.grpc_common import status_of
from padellm_ner.lifecycle import AsyncComponent
from padellm_ner.logs import RateLimitedLog
from padellm_ner.validation import DEFAULT_MAX_TEXT_CHARS, InvalidInput

from .. import metrics
from .kafka_options import KafkaSecurity
from .messages import DEFAULT_MAX_MESSAGE_BYTES, dead_letter_headers, fit_dead_letter, output_headers, parse_document
from .offsets import PartitionOffsets

log = logging.getLogger("padellm.stream")
# The workers are busy or away: the document waits (all partitions pause, with a capped back-off) and is tried
# again, however long that takes; nothing is dropped.
OVERLOAD = {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
# The document ran past its deadline: a few more tries, then a dead letter, so that one document cannot stall the
# stream (a deadline is not overload: it can be the document itself).
DEADLINE_ATTEMPTS = 3


class DuplicateIds(str, Enum):
    """What the stream does with a second record of a document id it has seen (at another offset)."""

    PROCESS = "process"  # both are processed; the second output carries a `duplicate-of` header (default)
    DEAD_LETTER = "dead-letter"  # the second goes to the dead-letter topic


@dataclass
class StreamConfig:
    bootstrap: str
    input_topic: str
    output_topic: str
    dead_letter_topic: str
    group_id: str = "padellm-ner"
    default_schema: str = "conll03"
    exactly_once: bool = False
    transactional_id: str | None = None
    max_in_flight: int = 64
    max_in_flight_per_partition: int = 16
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    commit_interval_s: float = 1.0
    overload_backoff_s: float = 1.0
    shutdown_grace_s: float = 30.0
    overload_backoff_max_s: float = 5.0  # the longest pause: the stream reads on within it of the workers' return
    duplicate_ids: DuplicateIds = DuplicateIds.PROCESS
    remembered_ids: int = 100_000  # how many recent ids duplicates are looked for among
    security: KafkaSecurity = field(default_factory=KafkaSecurity)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, processor: StreamProcessor):
        self.processor = processor

    async def on_partitions_revoked(self, revoked):
        await self.processor.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned):
        log.info("assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))


class StreamProcessor(AsyncComponent):
    def __init__(self, config: StreamConfig, orchestrator):
        self.config = config
        self.orchestrator = orchestrator
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.offsets: dict[TopicPartition, PartitionOffsets] = {}
        self.tasks: dict[TopicPartition, set[asyncio.Task]] = {}
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._stopping = asyncio.Event()
        self._loop: asyncio.Task | None = None
        self._overloaded_until = 0.0
        self._paused: set[TopicPartition] = set()
        self._last_commit = 0.0
        self.processed = 0
        self.dead_lettered = 0
        self.duplicates = 0
        self._seen: OrderedDict[str, str] = OrderedDict()  # document id -> the source of its first record
        self._overload_log = RateLimitedLog(log, every_s=10.0)  # an outage: one line per 10 s, with a count

    # --- lifecycle ------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        security = self.config.security.client_options()
        self._stopping.clear()
        producer_options = dict(
            bootstrap_servers=self.config.bootstrap, acks="all", enable_idempotence=True, linger_ms=2, **security
        )
        if self.config.exactly_once:
            producer_options["transactional_id"] = self.config.transactional_id or f"padellm-ner-{self.config.group_id}"
        producer = AIOKafkaProducer(**producer_options)
        await producer.start()
        self.producer = producer  # set once started: `_stop` closes only what was started
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.config.bootstrap,
            group_id=self.config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.config.max_in_flight,
            **security,
        )
        await consumer.start()
        self.consumer = consumer
        self.consumer.subscribe([self.config.input_topic], listener=_Rebalance(self))
        loop = self._run_transactional() if self.config.exactly_once else self._run_at_least_once()
        self._loop = asyncio.create_task(loop, name="stream-loop")

    async def _stop(self) -> None:
        """Stop reading, let documents in flight finish (up to `shutdown_grace_s`), commit, close the clients."""
        self._stopping.set()
        try:
            if self._loop is not None:
                await asyncio.gather(self._loop, return_exceptions=True)
        finally:
            self._loop = None
            try:
                if self.consumer:  # leaving the group commits through the rebalance listener: keep it set until then
                    await self.consumer.stop()
            finally:
                self.consumer = None
                if self.producer:
                    await self.producer.stop()
                self.producer = None

    def _started_consumer(self) -> AIOKafkaConsumer:
        if self.consumer is None:
            raise RuntimeError("the stream processor is not started")
        return self.consumer

    def _started_producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError("the stream processor is not started")
        return self.producer

    async def wait(self) -> None:
        """Until the stream loop ends: after `stop`, or on an error, which it raises."""
        if self._loop is not None:
            await asyncio.shield(self._loop)

    async def run(self) -> None:
        """Start, stream until stopped, stop."""
        async with self:
            await self.wait()

    # --- at-least-once --------------------------------------------------------------------------------------

    async def _run_at_least_once(self) -> None:
        consumer = self._started_consumer()
        while not self._stopping.is_set():
            self._apply_backpressure()
            room = self.config.max_in_flight - sum(len(t) for t in self.tasks.values())
            if room <= 0:
                await asyncio.sleep(0.01)
                await self._commit(due_only=True)
                continue
            batch = await consumer.getmany(timeout_ms=200, max_records=room)
            for tp, records in batch.items():
                for record in records:
                    self._dispatch(tp, record)
            await self._commit(due_only=True)
        log.info("stopping: finishing %d in-flight documents", sum(len(t) for t in self.tasks.values()))
        pending = [t for tasks in self.tasks.values() for t in tasks]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
            for task in not_done:  # abandoned: uncommitted, so re-delivered to whoever owns the partition next
                task.cancel()
            await asyncio.gather(*not_done, return_exceptions=True)
        await self._commit(due_only=False)

    def _dispatch(self, tp: TopicPartition, record) -> None:
        tracker = self.offsets.setdefault(tp, PartitionOffsets())
        tracker.started(record.offset)
        task = asyncio.create_task(self._handle(tp, record))
        self.tasks.setdefault(tp, set()).add(task)

        def finished(t: asyncio.Task, tp=tp, offset=record.offset) -> None:
            self.tasks.get(tp, set()).discard(t)
            if not t.cancelled() and t.exception() is None and tp in self.offsets:
                self.offsets[tp].finished(offset)
            elif not t.cancelled() and t.exception() is not None:
                log.error("document at %s/%d failed: %r", tp.topic, offset, t.exception())

        task.add_done_callback(finished)

    async def _handle(self, tp: TopicPartition, record) -> None:
        async with self._slots:
            outcome = await self._outcome(tp, record)
            await self._send_with_retry(*outcome)

    async def _outcome(self, tp: TopicPartition, record):
        """Every record gets one: its entity record, or a dead letter with the reason, whatever went wrong."""
        try:
            return await self._process(tp, record)
        except Exception as error:  # a bug or a failure nothing anticipated: the record still gets an outcome
            log.exception("document at %s/%d/%d failed", tp.topic, tp.partition, record.offset)
            return self._dead_letter(
                tp, record, f"internal error: {type(error).__name__}: {error}", "internal-error", error
            )

    async def _process(self, tp: TopicPartition, record):
        """(topic, key, value, headers) to write for an input record: its entity record or its dead letter."""
        source = f"{tp.topic}/{tp.partition}/{record.offset}"
        try:
            document = parse_document(
                record.value,
                default_schema=self.config.default_schema,
                max_message_bytes=self.config.max_message_bytes,
                max_text_chars=self.config.max_text_chars,
            )
        except InvalidInput as error:
            return self._dead_letter(tp, record, str(error), "invalid-input", error)
        first = self._first_source(document.id, source)
        if first is not None:
            self.duplicates += 1
            metrics.ERRORS.labels("duplicate-id").inc()
            log.warning("document id %r at %s was first seen at %s", document.id, source, first)
            if self.config.duplicate_ids is DuplicateIds.DEAD_LETTER:
                reason = f"document id {document.id!r} was first seen at {first}"
                return self._dead_letter(tp, record, reason, "duplicate-id", InvalidInput(reason))
        attempt = deadlines = 0
        while True:
            await self._wait_if_overloaded()
            try:
                entity_record = await self.orchestrator.recognize(
                    document.id, document.text, get_schema(document.schema), document.labels
                )
                break
            except (grpc.aio.AioRpcError, PadellmError) as error:
                code, details = status_of(error)
                if code in OVERLOAD:
                    attempt += 1
                    metrics.ERRORS.labels("stream-overload").inc()
                    backoff = min(
                        self.config.overload_backoff_max_s, self.config.overload_backoff_s * 2 ** min(attempt, 5)
                    )
                    self._overloaded_until = max(self._overloaded_until, time.monotonic() + backoff)
                    self._overload_log.warning(f"workers overloaded or unreachable ({code.name})")
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:  # a worker call's, or the document's budget
                    deadlines += 1
                    metrics.ERRORS.labels("stream-deadline").inc()
                    if deadlines < DEADLINE_ATTEMPTS:
                        continue
                    reason = f"the document ran past its deadline {deadlines} times: {details}"
                    return self._dead_letter(tp, record, reason, "deadline", error)
                reason = f"{code.name}: {details}"
                if code == grpc.StatusCode.FAILED_PRECONDITION:  # no worker serves the document's schema
                    return self._dead_letter(tp, record, reason, "schema-not-served", error)
                return self._dead_letter(tp, record, reason, "worker-error", error)
        self.processed += 1
        value = json.dumps(entity_record.to_json(), ensure_ascii=False).encode()
        headers = output_headers(entity_record, source) + ([("duplicate-of", first.encode())] if first else [])
        return self.config.output_topic, document.id.encode(), value, headers

    def _first_source(self, document_id: str, source: str) -> str | None:
        """Where an earlier record of this id came from, if one did (a re-delivery of the same record is not a
        duplicate); remembers the last `remembered_ids` ids."""
        first = self._seen.setdefault(document_id, source)
        self._seen.move_to_end(document_id)
        while len(self._seen) > self.config.remembered_ids:
            self._seen.popitem(last=False)
        return None if first == source else first

    def _dead_letter(self, tp, record, reason: str, error_type: str, error: BaseException):
        self.dead_lettered += 1
        metrics.ERRORS.labels(f"dead-letter:{error_type}").inc()
        log.warning("dead letter %s/%d/%d: %s", tp.topic, tp.partition, record.offset, reason)
        headers = dead_letter_headers(
            reason, error_type, type(error).__name__, tp.topic, tp.partition, record.offset, int(time.time() * 1000)
        )
        key, value, cut = fit_dead_letter(record.key, record.value, self.config.max_message_bytes)
        return self.config.dead_letter_topic, key, value, headers + cut

    async def _send_with_retry(self, topic, key, value, headers) -> None:
        producer = self._started_producer()
        attempt = 0
        while True:
            try:
                await producer.send_and_wait(topic, value=value, key=key, headers=headers)
                return
            except KafkaError as error:  # e.g. the broker restarting: the idempotent producer may retry safely
                attempt += 1
                log.warning("producing to %s failed (%r); retrying", topic, error)
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)))

    async def _wait_if_overloaded(self) -> None:
        # a loop, not an Event: another document may push the deadline further while this one sleeps
        while (remaining := self._overloaded_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)

    def _apply_backpressure(self) -> None:
        consumer = self._started_consumer()
        assignment = consumer.assignment()
        overloaded = time.monotonic() < self._overloaded_until
        want_paused = {
            tp
            for tp in assignment
            if overloaded or len(self.tasks.get(tp, ())) >= self.config.max_in_flight_per_partition
        }
        to_pause, to_resume = want_paused - self._paused, (self._paused - want_paused) & assignment
        if to_pause:
            consumer.pause(*to_pause)
        if to_resume:
            consumer.resume(*to_resume)
        self._paused = want_paused

    async def _commit(self, due_only: bool, partitions: set[TopicPartition] | None = None) -> None:
        consumer = self._started_consumer()
        if due_only and time.monotonic() - self._last_commit < self.config.commit_interval_s:
            return
        self._last_commit = time.monotonic()
        # The trackers are taken before the await: a rebalance may revoke (and forget) a partition while the
        # commit is in flight, so the result is recorded on the tracker that was committed, not looked up again.
        trackers = {
            tp: t
            for tp, t in self.offsets.items()
            if (partitions is None or tp in partitions) and t.to_commit() is not None
        }
        offsets = {tp: t.to_commit() for tp, t in trackers.items()}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            for tp, offset in offsets.items():
                trackers[tp].committed = offset
        except KafkaError as error:  # a rebalance or a broker restart: the next commit catches up
            log.warning("offset commit failed (%r); will retry", error)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before partitions move to another consumer: finish (or abandon) their documents, commit, forget."""
        if self.config.exactly_once:
            return  # transactions commit offsets with their outputs; nothing is held between batches
        pending = [t for tp in revoked for t in self.tasks.get(tp, ())]
        if pending:
            done, not_done = await asyncio.wait(pending, timeout=self.config.shutdown_grace_s)
            for task in not_done:
                task.cancel()
        await self._commit(due_only=False, partitions=revoked)
        for tp in revoked:
            self.offsets.pop(tp, None)
            self.tasks.pop(tp, None)
            self._paused.discard(tp)

    # --- exactly-once ---------------------------------------------------------------------------------------

    async def _run_transactional(self) -> None:
        consumer, producer = self._started_consumer(), self._started_producer()
        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=self.config.max_in_flight)
            if not batch:
                continue
            items = [(tp, record) for tp, records in batch.items() for record in records]
            outcomes = await asyncio.gather(*(self._outcome(tp, record) for tp, record in items))
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            try:
                async with producer.transaction():
                    for topic, key, value, headers in outcomes:
                        await producer.send(topic, value=value, key=key, headers=headers)
                    await producer.send_offsets_to_transaction(offsets, self.config.group_id)
            except KafkaError as error:
                # aborted: nothing of this batch is visible; go back to the committed offsets and redo it
                log.warning("transaction aborted (%r); re-reading from the committed offsets", error)
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, committed)
