"""`padellm-ner stream`: the Kafka stream service (consumer group -> orchestrator -> output topic)."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from padellm_ner.lifecycle import shutdown_requested
from padellm_ner.telemetry import start_metrics_server

from ..main import worker_model_info, worker_pool
from ..orchestrator import Orchestrator
from .config import StreamArgs
from .kafka_options import KafkaSecurity
from .processor import StreamProcessor

log = logging.getLogger("padellm.stream")
_TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS: created concurrently by another instance


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, security: KafkaSecurity) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            for topic, code, message in (e[:3] for e in response.topic_errors):
                if code not in (0, _TOPIC_EXISTS):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message}")
            log.info("created topics %s with %d partitions", missing, partitions)
    finally:
        await admin.close()


async def run_stream(args: StreamArgs) -> None:
    shutdown = shutdown_requested()
    config = args.stream
    start_metrics_server(args.metrics_port, args.metrics_host)
    if args.create_topics:
        await ensure_topics(
            config.bootstrap,
            [config.input_topic, config.output_topic, config.dead_letter_topic],
            args.partitions,
            config.security,
        )
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(worker_pool(args.workers))
        model, version = worker_model_info(pool)
        orchestrator = Orchestrator(pool, args.orchestrator.config(model, version))
        processor = await stack.enter_async_context(StreamProcessor(config, orchestrator))
        log.info(
            "streaming %s -> %s (dead letters: %s, group %s, %s)",
            config.input_topic,
            config.output_topic,
            config.dead_letter_topic,
            config.group_id,
            "exactly-once" if config.exactly_once else "at-least-once",
        )
        print(f"stream ready: {config.input_topic} -> {config.output_topic}", flush=True)
        stopped = asyncio.create_task(shutdown.wait())
        ended = asyncio.create_task(processor.wait())
        try:
            await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not ended.done():
                ended.cancel()  # cancels the wait only: the loop itself ends in the processor's stop
    if ended.done() and not ended.cancelled():
        ended.result()  # the stream loop failed: its error, raised once the clients are closed
    log.info("stopped after %d documents (%d dead letters)", processor.processed, processor.dead_lettered)


def main(args: StreamArgs) -> int:
    asyncio.run(run_stream(args))
    return 0
