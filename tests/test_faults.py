"""The fault suite: the stream process against the real broker and a real worker, under faults, bounded in time.

Each scenario prints a report (sent / out / distinct / duplicates / missing / dead letters) and checks the
targets: nothing lost in either mode, no duplicates under read_committed in exactly-once mode, every bad record
in the dead-letter topic, and the group's committed offset at the end of every partition.
"""

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from kafka_helpers import TEXTS, collect, create_topics, names, produce, produce_documents
from serving import start_worker_process
from test_stream import REPO, start_stream_process

from service.stream.processor import DEADLINE_ATTEMPTS

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


BAD_RECORDS = [
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
POISON_BUDGET_S = 8.0


async def good_documents_out_s(kafka_bootstrap, worker_process, values: list[bytes], good: list[str], bad: int):
    """Run one stream process over `values` (one partition, budgets of 8 s for any document): seconds from the
    process being ready to the last good document out, the report and the dead letters."""
    topics = names("faults-poison")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=1)
    await produce(kafka_bootstrap, topics["input"], values)
    budget = ["--budget-min-s", str(POISON_BUDGET_S), "--budget-per-window-s", "0.001"]
    process = start_stream_process(kafka_bootstrap, topics, worker_process, *budget)
    ready_ms = time.time() * 1000
    try:
        result, dead = await report(kafka_bootstrap, topics, f"{len(good)} good, {bad} bad", good, bad)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(process) == 0
    out = await collect(kafka_bootstrap, topics["output"], until=len(good), timeout_s=30)
    last_good_s = (max(r.timestamp for r in out) - ready_ms) / 1000
    return last_good_s, result, dead, ready_ms


async def test_bad_records_and_a_poison_document_among_good_ones(kafka_bootstrap, worker_process):
    """Seventeen kinds of bad record and a document too long for its budget, among 50 good documents: each bad
    one in the dead-letter topic with its reason, the poison one after its tries, every good one out, the
    committed offset at the end of the partition; and the good ones delayed, against the same 50 without the bad
    records and the poison, by at most the time the poison is given (its tries)."""
    good = [json.dumps({"id": f"good-{i}", "text": TEXTS[i % len(TEXTS)]}).encode() for i in range(50)]
    ids = [f"good-{i}" for i in range(50)]
    poison = json.dumps({"id": "poison", "text": "Peter Blackburn went to Brussels . " * 1500}).encode()
    baseline_s, _, _, _ = await good_documents_out_s(kafka_bootstrap, worker_process, good, ids, 0)
    values = [*good[:10], *BAD_RECORDS[:8], poison, *good[10:30], *BAD_RECORDS[8:], *good[30:]]
    with_poison_s, result, dead, ready_ms = await good_documents_out_s(
        kafka_bootstrap, worker_process, values, ids, len(BAD_RECORDS) + 1
    )
    poison_out_s = (next(r.timestamp for r in dead if r.value == poison) - ready_ms) / 1000
    delay_s = with_poison_s - baseline_s
    poison_budget_s = DEADLINE_ATTEMPTS * POISON_BUDGET_S  # the time it is given: its tries, each within its budget
    print(
        f"50 good documents: the last out at {baseline_s:.1f} s alone, {with_poison_s:.1f} s among 17 bad records "
        f"and a poison document (dead-lettered at {poison_out_s:.1f} s): delayed {delay_s:.1f} s, "
        f"{delay_s / poison_budget_s:.2f}x the poison's budget ({DEADLINE_ATTEMPTS} tries of {POISON_BUDGET_S:.0f} s)"
    )
    assert result.missing == 0 and result.dead_letters == len(BAD_RECORDS) + 1
    kinds = {r.value: dict(r.headers)["error-type"].decode() for r in dead}
    assert kinds[poison] == "deadline" and all(kinds[b] == "invalid-input" for b in BAD_RECORDS)
    assert delay_s <= poison_budget_s


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def error_counts(metrics_port: int) -> dict[str, float]:
    """padellm_errors_total by kind, from the stream process's Prometheus endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith("padellm_errors_total{"):
            kind = line.split('kind="', 1)[1].split('"', 1)[0]
            counts[kind] = float(line.rsplit(" ", 1)[1])
    return counts


async def test_stream_defaults_on_short_documents(kafka_bootstrap, worker_process):
    """The stream at its default settings (64 documents in flight, budgets from size) on 96 short documents and
    one worker: no deadline overrun, no overload pause, no dead letter, all out."""
    topics = names("faults-defaults")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 96)
    metrics_port = free_port()
    started = time.monotonic()
    process = start_stream_process(
        kafka_bootstrap, topics, worker_process, "--metrics-port", str(metrics_port), max_in_flight=None
    )
    try:
        result, _ = await report(kafka_bootstrap, topics, "defaults, 96 short documents", ids, 0)
        elapsed = time.monotonic() - started
        errors = await asyncio.to_thread(error_counts, metrics_port)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(process) == 0
    print(f"defaults, 96 short documents: {elapsed:.1f} s, {96 / elapsed:.2f} documents/s, errors {errors}")
    assert result.missing == 0 and result.dead_letters == 0
    assert not any(errors.get(kind) for kind in ("stream-deadline", "stream-overload"))


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


async def test_kill_9_inside_a_transaction_commit(kafka_bootstrap, worker_process):
    """Exactly-once: three stream processes each killed with SIGKILL inside a transaction's commit (a seeded
    commit and a seeded moment after the commit was asked for), then one run to the end: nothing lost, nothing
    twice under read_committed."""
    rng = random.Random(2029)
    topics = names("faults-commit")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=3)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 30)
    extra = ["--exactly-once", "--transactional-id", topics["group"] + "-tx"]
    wrapper = str(Path(__file__).with_name("stream_killed_in_commit.py"))
    for _ in range(3):
        kill_at, delay_s = rng.randint(1, 2), rng.uniform(0.0, 0.05)
        command = (sys.executable, wrapper, str(kill_at), f"{delay_s:.4f}")
        process = start_stream_process(kafka_bootstrap, topics, worker_process, *extra, command=command)
        # killed by its own SIGKILL, in the middle of a commit: anything else fails the scenario
        assert await asyncio.to_thread(process.wait, 240) == -signal.SIGKILL
    process = start_stream_process(kafka_bootstrap, topics, worker_process, *extra)
    try:
        result, _ = await report(kafka_bootstrap, topics, "kill -9 x3 inside a commit (eos)", ids, 0)
        assert await committed_at_end(kafka_bootstrap, topics["input"], topics["group"])
    finally:
        assert stop(process) == 0
    assert result.missing == 0 and result.duplicates == 0


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
async def test_broker_restart(worker_process, tmp_path, exactly_once):
    """A broker of its own (other ports) restarted while the stream runs, documents produced before and after:
    nothing lost; in exactly-once mode nothing twice (read_committed)."""
    env = {
        **os.environ,
        "KAFKA_PORT": "19092",
        "KAFKA_CONTROLLER_PORT": "19093",
        "KAFKA_HOME": str(tmp_path / "kafka"),
        "KAFKA_LIBS": str(REPO / ".cache" / "kafka" / "libs"),
    }
    script = str(REPO / "scripts" / "kafka.sh")
    await asyncio.to_thread(subprocess.run, ["bash", script, "start"], check=True, env=env)
    bootstrap = "127.0.0.1:19092"
    extra = ["--exactly-once", "--transactional-id", "broker-restart-tx"] if exactly_once else []
    try:
        topics = names("faults-broker")
        await create_topics(bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
        ids = await produce_documents(bootstrap, topics["input"], 16)
        process = start_stream_process(bootstrap, topics, worker_process, *extra)
        try:
            await collect(bootstrap, topics["output"], until=3, timeout_s=180)
            await asyncio.to_thread(subprocess.run, ["bash", script, "restart"], check=True, env=env)
            ids += await produce_documents(bootstrap, topics["input"], 4, start=16)
            mode = "eos" if exactly_once else "alo"
            result, _ = await report(bootstrap, topics, f"broker restart ({mode})", ids, 0)
            assert await committed_at_end(bootstrap, topics["input"], topics["group"])
        finally:
            assert stop(process) == 0
    finally:
        await asyncio.to_thread(subprocess.run, ["bash", script, "stop"], check=True, env=env)
    assert result.missing == 0
    if exactly_once:
        assert result.duplicates == 0


async def test_worker_killed_and_back(kafka_bootstrap):
    """The only worker is killed with SIGKILL mid-stream and comes back 5 s later on the same address: the stream
    waits (overload back-off), then reads on; nothing is lost."""
    port = free_port()
    topics = names("faults-worker")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 16)
    worker = start_worker_process(port)
    stream = start_stream_process(kafka_bootstrap, topics, f"127.0.0.1:{port}")
    try:
        await collect(kafka_bootstrap, topics["output"], until=3, timeout_s=240)
        stop(worker, signal.SIGKILL)
        await asyncio.sleep(5.0)
        before = len(await collect(kafka_bootstrap, topics["output"], until=len(ids), timeout_s=3))
        worker = start_worker_process(port)
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
