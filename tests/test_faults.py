"""The fault suite: the stream process against the real broker and a real worker, under faults, bounded in time.

Each scenario prints a report (sent / out / distinct / duplicates / missing / dead letters) and checks the
targets: nothing lost in either mode, no duplicates under read_committed in exactly-once mode, every bad record
in the dead-letter topic, and the group's committed offset at the end of every partition.
"""

import asyncio
import json
import random
import signal
import time
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import collect, create_topics, names, produce, produce_documents
from test_stream import start_stream_process

pytestmark = pytest.mark.timeout(900)


@dataclass
class Report:
    scenario: str
    sent: int
    out: int
    distinct: int
    dead_letters: int
    missing: int

    @property
    def duplicates(self) -> int:
        return self.out - self.distinct

    def __str__(self) -> str:
        return (
            f"{self.scenario}: sent {self.sent}, out {self.out}, distinct {self.distinct}, "
            f"duplicates {self.duplicates}, missing {self.missing}, dead letters {self.dead_letters}"
        )


async def report(bootstrap: str, topics: dict, scenario: str, good: list[str], bad: int) -> tuple[Report, list]:
    records = await collect(bootstrap, topics["output"], expect_ids=set(good), timeout_s=300, settle_s=3.0)
    dead = await collect(bootstrap, topics["dead"], until=bad, timeout_s=60) if bad else []
    keys = [r.key.decode() for r in records]
    result = Report(scenario, len(good) + bad, len(keys), len(set(keys)), len(dead), len(set(good) - set(keys)))
    print(result)
    return result, dead


async def committed_at_end(bootstrap: str, topic: str, group: str, timeout_s: float = 60.0) -> bool:
    """Whether the group's committed offset reaches the end of every partition of the topic (within timeout)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(group)
            if all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions):
                return True
            await asyncio.sleep(1.0)
        return False
    finally:
        await admin.close()
        await consumer.stop()


def stop(process, sig=signal.SIGTERM) -> int:
    process.send_signal(sig)
    return process.wait(timeout=120)


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
async def test_kill_9_at_seeded_random_points(kafka_bootstrap, worker_process, exactly_once):
    """Three stream processes killed with SIGKILL after a seeded random number of outputs each, then one run to
    the end: nothing lost; in exactly-once mode nothing twice (read_committed)."""
    rng = random.Random(2026 + exactly_once)
    topics = names("faults-kill")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=3)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 30)
    extra = ["--exactly-once", "--transactional-id", topics["group"] + "-tx"] if exactly_once else []
    seen = 0
    for _ in range(3):
        process = start_stream_process(kafka_bootstrap, topics, worker_process, *extra)
        seen += rng.randint(1, 5)
        try:
            await collect(kafka_bootstrap, topics["output"], until=seen, timeout_s=240)
            await asyncio.sleep(rng.uniform(0.0, 1.5))  # somewhere inside the next batch or transaction
        finally:
            stop(process, signal.SIGKILL)
    process = start_stream_process(kafka_bootstrap, topics, worker_process, *extra)
    try:
        result, _ = await report(kafka_bootstrap, topics, f"kill -9 x3 ({'eos' if exactly_once else 'alo'})", ids, 0)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(process) == 0
    assert result.missing == 0
    if exactly_once:
        assert result.duplicates == 0


async def test_bad_records_and_a_poison_document_among_good_ones(kafka_bootstrap, worker_process):
    """Sixteen kinds of bad record and a document too long for its budget, among good documents: each bad one
    in the dead-letter topic with its reason, the poison one after its tries, every good one out, and the
    committed offset at the end of the partition."""
    topics = names("faults-poison")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=1)
    bad = [
        b"not json",
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b"null",
        b'{"text": "no id"}',
        b'{"id": "a"}',
        b'{"id": 1, "text": "EU"}',
        b'{"id": "b", "text": 7}',
        b'{"id": "c", "text": "EU", "schema": ["conll03"]}',
        b'{"id": "d", "text": "EU", "labels": "PER"}',
        b'{"id": "e", "text": "EU", "labels": ["GPE"]}',
        b'{"id": "f", "text": "EU", "schema": "nope"}',
        b'{"id": "g g", "text": "EU"}',
        b'{"id": "h", "text": "Peter \\ud800"}',
        b'{"id": "i", "text": "EU", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"id": "j", "text": "   "}',
    ]
    poison = json.dumps({"id": "poison", "text": "Peter Blackburn went to Brussels . " * 1500}).encode()
    good = [json.dumps({"id": f"good-{i}", "text": "Peter Blackburn"}).encode() for i in range(12)]
    values = [*good[:4], *bad[:8], poison, *good[4:8], *bad[8:], *good[8:]]
    await produce(kafka_bootstrap, topics["input"], values)
    budget = ["--budget-min-s", "8", "--budget-per-window-s", "0.001"]  # 8 s for any document
    started = time.monotonic()
    process = start_stream_process(kafka_bootstrap, topics, worker_process, *budget)
    try:
        result, dead = await report(
            kafka_bootstrap, topics, "bad records + poison", [f"good-{i}" for i in range(12)], len(bad) + 1
        )
        elapsed = time.monotonic() - started
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(process) == 0
    print(f"bad records + poison: all out in {elapsed:.1f} s")
    out = await collect(kafka_bootstrap, topics["output"], until=12, timeout_s=30)
    first = min(r.timestamp for r in out)
    done = sorted((r.timestamp - first) / 1000 for r in out)
    poison_out = next(r.timestamp for r in dead if r.value == poison)
    print(
        f"good documents out at {done} s after the first; the poison dead-lettered at {(poison_out - first) / 1000} s"
    )
    # the good documents do not wait for the poison's tries: all are out long before it is dead-lettered
    assert done[-1] + 8.0 < (poison_out - first) / 1000
    assert result.missing == 0 and result.dead_letters == len(bad) + 1
    kinds = {r.value: dict(r.headers)["error-type"].decode() for r in dead}
    assert kinds[poison] == "deadline" and all(kinds[b] == "invalid-input" for b in bad)


async def test_sigterm_mid_stream_then_restart(kafka_bootstrap, worker_process):
    """SIGTERM while documents are in flight: the process finishes or leaves them uncommitted and exits 0 within
    its grace period; a new process reads on; nothing is lost."""
    topics = names("faults-sigterm")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 20)
    first = start_stream_process(kafka_bootstrap, topics, worker_process, "--shutdown-grace-s", "20")
    try:
        await collect(kafka_bootstrap, topics["output"], until=3, timeout_s=240)
    finally:
        started = time.monotonic()
        assert stop(first) == 0
        assert time.monotonic() - started < 60
    second = start_stream_process(kafka_bootstrap, topics, worker_process)
    try:
        result, _ = await report(kafka_bootstrap, topics, "SIGTERM mid-stream", ids, 0)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(second) == 0
    assert result.missing == 0


def start_worker(port: int):
    import os
    import subprocess

    from test_stream import CLI

    env = {**os.environ, "PADELLM_THREADS": "1", "PADELLM_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [CLI, "worker", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert "ready on" in process.stdout.readline()
    return process


async def test_worker_killed_and_back(kafka_bootstrap):
    """The only worker is killed with SIGKILL mid-stream and comes back 5 s later on the same address: the stream
    waits (overload back-off), then reads on; nothing is lost."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    topics = names("faults-worker")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 16)
    worker = start_worker(port)
    stream = start_stream_process(kafka_bootstrap, topics, f"127.0.0.1:{port}")
    try:
        await collect(kafka_bootstrap, topics["output"], until=3, timeout_s=240)
        stop(worker, signal.SIGKILL)
        await asyncio.sleep(5.0)
        before = len(await collect(kafka_bootstrap, topics["output"], until=len(ids), timeout_s=3))
        worker = start_worker(port)
        back = time.monotonic()
        await collect(kafka_bootstrap, topics["output"], until=before + 1, timeout_s=120)
        recovered_s = time.monotonic() - back
        print(f"worker killed and back: the stream read on {recovered_s:.1f} s after the worker's return")
        result, _ = await report(kafka_bootstrap, topics, "worker killed and back", ids, 0)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(stream) == 0
        stop(worker)
    assert result.missing == 0 and result.dead_letters == 0
    assert recovered_s < 15.0  # the overload pause is capped at 5 s
