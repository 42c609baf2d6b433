"""`padellm-ner stream`: the Kafka stream service (consumer group -> orchestrator -> output topic)."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from padellm_ner.core.segment import WindowPolicy
from padellm_ner.grpc_common import TlsFiles

from ..main import worker_model_info

from ..orchestrator import MentionStart, Orchestrator, OrchestratorConfig
from ..worker_pool import WorkerPool
from .kafka_options import KafkaSecurity
from .processor import StreamConfig, StreamProcessor

log = logging.getLogger("padellm.stream")


async def ensure_topics(bootstrap: str, topics: list[str], partitions: int, security: KafkaSecurity) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            for topic, code, message in (e[:3] for e in response.topic_errors):
                if code not in (0, 36):  # 36: already exists (created concurrently)
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message}")
            log.info("created topics %s with %d partitions", missing, partitions)
    finally:
        await admin.close()


async def run_stream(args) -> None:
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr=args.metrics_host)
    security = KafkaSecurity(args.security_protocol, args.sasl_mechanism, args.sasl_username, args.sasl_password,
                             args.ssl_cafile, args.ssl_certfile, args.ssl_keyfile)
    dead_letter = args.dead_letter_topic or f"{args.input_topic}.dead-letter"
    if args.create_topics:
        await ensure_topics(args.bootstrap, [args.input_topic, args.output_topic, dead_letter], args.partitions, security)
    worker_tls = TlsFiles(args.worker_tls_cert, args.worker_tls_key, args.worker_tls_ca)
    async with WorkerPool(args.workers.split(","), tls=worker_tls) as pool:
        model, version = await worker_model_info(pool)
        orchestrator = Orchestrator(pool, OrchestratorConfig(
            mode=args.mode, call_deadline_s=args.deadline_s, model=model, model_version=version,
            window_policy=WindowPolicy(args.window_tokens, args.window_unit),
            mention_start=MentionStart(args.mention_start)))
        config = StreamConfig(
            bootstrap=args.bootstrap, input_topic=args.input_topic, output_topic=args.output_topic,
            dead_letter_topic=dead_letter, group_id=args.group_id, default_schema=args.schema,
            exactly_once=args.exactly_once, transactional_id=args.transactional_id,
            max_in_flight=args.max_in_flight, max_in_flight_per_partition=args.max_in_flight_per_partition,
            max_message_bytes=args.max_message_bytes, max_text_chars=args.max_text_chars, security=security)
        processor = StreamProcessor(config, orchestrator)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, processor.stop)
        log.info("streaming %s -> %s (dead letters: %s, group %s, %s)", args.input_topic, args.output_topic,
                 dead_letter, args.group_id, "exactly-once" if args.exactly_once else "at-least-once")
        print(f"stream ready: {args.input_topic} -> {args.output_topic}", flush=True)
        await processor.run()
        log.info("stopped after %d documents (%d dead letters)", processor.processed, processor.dead_lettered)


def main(args) -> int:
    asyncio.run(run_stream(args))
    return 0
