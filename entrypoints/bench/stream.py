"""Stream benchmark: documents/s and end-to-end latency through Kafka against calling the orchestrator
directly, on the same documents and the same workers, in one run.

direct: the orchestrator called with `concurrency` documents in flight.
kafka:  the documents produced to an input topic, the stream processor (same orchestrator settings, the same
        bound on documents in flight) in this process, the records read back from the output topic.
        Latency = record read - document produced.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from tqdm import tqdm

from padellm_ner.core import get_schema
from service.orchestrator import Orchestrator, OrchestratorConfig
from service.stream.processor import StreamConfig, StreamProcessor
from service.worker_pool import WorkerPool


def _summary(latencies: list[float], seconds: float) -> dict:
    values = sorted(latencies)
    return {
        "documents": len(values),
        "seconds": seconds,
        "documents_per_s": len(values) / seconds,
        "latency_ms_mean": statistics.fmean(values) * 1000,
        "latency_ms_p50": values[len(values) // 2] * 1000,
        "latency_ms_p95": values[min(len(values) - 1, int(0.95 * (len(values) - 1) + 0.5))] * 1000,
    }


async def direct(orchestrator: Orchestrator, docs: list[dict], concurrency: int) -> dict:
    slots = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    bar = tqdm(total=len(docs), desc="direct orchestrator", unit="doc")

    async def one(doc):
        async with slots:
            started = time.perf_counter()
            await orchestrator.recognize(doc["id"], doc["text"], get_schema("conll03"))
            latencies.append(time.perf_counter() - started)
            bar.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(one(d) for d in docs))
    bar.close()
    return _summary(latencies, time.perf_counter() - started)


async def through_kafka(
    bootstrap: str, orchestrator: Orchestrator, docs: list[dict], concurrency: int, partitions: int
) -> dict:
    run = uuid.uuid4().hex[:8]
    topics = {"input": f"bench-{run}-in", "output": f"bench-{run}-out", "dead": f"bench-{run}-dlq"}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, partitions, 1) for t in topics.values()])
    await admin.close()
    config = StreamConfig(
        bootstrap=bootstrap,
        input_topic=topics["input"],
        output_topic=topics["output"],
        dead_letter_topic=topics["dead"],
        group_id=f"bench-{run}",
        max_in_flight=concurrency,
        max_in_flight_per_partition=concurrency,
    )
    processor = StreamProcessor(config, orchestrator)
    task = asyncio.create_task(processor.run())
    consumer = AIOKafkaConsumer(
        topics["output"], bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    await producer.start()
    await asyncio.sleep(2.0)  # let the group settle so that the clock does not measure the first join
    sent: dict[str, float] = {}
    latencies: list[float] = []
    started = time.perf_counter()
    for doc in docs:
        sent[doc["id"]] = time.perf_counter()
        await producer.send(topics["input"], json.dumps(doc).encode(), key=doc["id"].encode())
    await producer.flush()
    bar = tqdm(total=len(docs), desc="through Kafka", unit="doc")
    seen: set[str] = set()
    while len(seen) < len(docs):
        batch = await consumer.getmany(timeout_ms=500)
        now = time.perf_counter()
        for records in batch.values():
            for record in records:
                key = record.key.decode()
                if key not in seen:
                    seen.add(key)
                    latencies.append(now - sent[key])
                    bar.update(1)
    elapsed = time.perf_counter() - started
    bar.close()
    await processor.stop()
    await task
    await producer.stop()
    await consumer.stop()
    return _summary(latencies, elapsed)


async def run(bootstrap: str, workers: list[str], docs: list[dict], concurrency: int, partitions: int = 4) -> dict:
    async with WorkerPool(workers) as pool:
        orchestrator = Orchestrator(pool, OrchestratorConfig())
        for doc in docs[:2]:
            await orchestrator.recognize("warm-" + doc["id"], doc["text"] + " .", get_schema("conll03"))
        d = await direct(orchestrator, docs, concurrency)
        k = await through_kafka(bootstrap, orchestrator, docs, concurrency, partitions)
    return {
        "documents": len(docs),
        "concurrency": concurrency,
        "direct": d,
        "kafka": k,
        "kafka_throughput_cost": 1.0 - k["documents_per_s"] / d["documents_per_s"],
    }


def table(report: dict) -> str:
    lines = [f"{'path':<22} {'docs/s':>8} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9}"]
    for name in ("direct", "kafka"):
        r = report[name]
        lines.append(
            f"{name:<22} {r['documents_per_s']:8.2f} {r['latency_ms_mean']:9.1f} {r['latency_ms_p50']:9.1f} "
            f"{r['latency_ms_p95']:9.1f}"
        )
    lines.append(f"throughput cost of the Kafka path: {report['kafka_throughput_cost'] * 100:+.1f} %")
    return "\n".join(lines)
