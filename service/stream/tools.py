"""`padellm-ner kafka produce|consume`: feed documents to a topic and read records back (demo, operations)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def produce(bootstrap: str, topic: str, path: str) -> int:
    """Each line of a JSON-lines file becomes one record (key = its "id" where it has one)."""
    lines = (await asyncio.to_thread(Path(path).read_bytes)).split(b"\n")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    count = 0
    try:
        for line in lines:
            if not line:
                continue
            try:
                key = str(json.loads(line).get("id", "")).encode() or None
            except (ValueError, AttributeError):
                key = None  # not a JSON object: sent as is (it will be dead-lettered)
            await producer.send_and_wait(topic, line, key=key)
            count += 1
    finally:
        await producer.stop()
    return count


def _shown(data: bytes | None) -> str | None:
    """Bytes as text: UTF-8 where they are, other bytes escaped (a dead letter keeps the bytes it was sent)."""
    return None if data is None else data.decode("utf-8", "backslashreplace")


def _value(data: bytes | None):
    """A record's value: its JSON where it is JSON, else its bytes as text; None for a tombstone."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return _shown(data)


async def consume(bootstrap: str, topic: str, count: int, timeout_s: float, pretty: bool) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    seen += 1
                    out = {
                        "partition": record.partition,
                        "offset": record.offset,
                        "key": _shown(record.key),
                        "headers": {k: _shown(v) for k, v in record.headers},
                        "value": _value(record.value),
                    }
                    print(json.dumps(out, ensure_ascii=False, indent=2 if pretty else None), flush=True)
    finally:
        await consumer.stop()
    if seen < count:
        print(f"padellm-ner: only {seen} of {count} records arrived in {timeout_s:.0f} s", file=sys.stderr)
        return 1
    return 0


def main(args) -> int:
    if args.kafka_command == "produce":
        n = asyncio.run(produce(args.bootstrap, args.topic, args.file))
        print(f"produced {n} records to {args.topic}", file=sys.stderr)
        return 0
    return asyncio.run(consume(args.bootstrap, args.topic, args.count, args.timeout, args.pretty))
