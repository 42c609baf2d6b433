"""Helpers for the stream tests against the real broker."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "BRUSSELS 1996-08-22",
    "Japan beat Syria in the Asian Cup .",
    "Werner Zwingmann spoke for Germany .",
    "Nokia shares rose in Helsinki .",
]


def names(prefix: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {
        "input": f"{prefix}-{run}-in",
        "output": f"{prefix}-{run}-out",
        "dead": f"{prefix}-{run}-dlq",
        "group": f"{prefix}-{run}-group",
    }


async def create_topics(bootstrap: str, topics: list[str], partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


def document(i: int) -> dict:
    return {"id": f"doc-{i}", "text": TEXTS[i % len(TEXTS)]}


async def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes | None] | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value=value, key=(keys[i] if keys else str(i).encode()))
    finally:
        await producer.stop()


async def produce_documents(bootstrap: str, topic: str, count: int, start: int = 0) -> list[str]:
    docs = [document(i) for i in range(start, start + count)]
    await produce(bootstrap, topic, [json.dumps(d).encode() for d in docs], [d["id"].encode() for d in docs])
    return [d["id"] for d in docs]


async def collect(
    bootstrap: str,
    topic: str,
    *,
    until: int | None = None,
    expect_ids: set[str] | None = None,
    timeout_s: float = 240.0,
    committed_only: bool = True,
    settle_s: float = 0.0,
) -> list:
    """Every record of a topic from the beginning, until `until` records or all `expect_ids` keys are there
    (then `settle_s` more, to catch duplicates), or the timeout."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
    )
    await consumer.start()
    records: list = []
    deadline = time.monotonic() + timeout_s
    settle_deadline = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for rs in batch.values():
                records.extend(rs)
            keys = {r.key.decode() for r in records if r.key is not None}
            complete = (until is not None and len(records) >= until) or (expect_ids is not None and expect_ids <= keys)
            if complete and settle_deadline is None:
                settle_deadline = time.monotonic() + settle_s
            if settle_deadline is not None and time.monotonic() >= settle_deadline:
                break
    finally:
        await consumer.stop()
    return records


async def wait_for(predicate, timeout_s: float = 120.0, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval_s)
    raise TimeoutError("condition not met in time")
