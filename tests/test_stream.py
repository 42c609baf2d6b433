"""The Kafka stream against a real Apache Kafka broker, with real worker processes and the real model."""

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from kafka_helpers import TEXTS, collect, create_topics, document, names, produce, produce_documents
from serving import start_worker_process

from padellm_ner.core import get_schema
from service.orchestrator import Orchestrator, OrchestratorConfig
from service.stream.processor import StreamConfig, StreamProcessor
from service.worker_pool import WorkerPool

CLI = str(Path(sys.executable).parent / "padellm-ner")
REPO = Path(__file__).resolve().parents[1]


async def start_processor(bootstrap, topics, worker_address, **options):
    pool = WorkerPool([worker_address])
    await pool.start()
    config = StreamConfig(
        bootstrap=bootstrap,
        input_topic=topics["input"],
        output_topic=topics["output"],
        dead_letter_topic=topics["dead"],
        group_id=topics["group"],
        **options,
    )
    processor = StreamProcessor(config, Orchestrator(pool, OrchestratorConfig(model="test")))
    task = asyncio.create_task(processor.run())
    return processor, task, pool


async def stop_processor(processor, task, pool):
    await processor.stop()
    await asyncio.wait_for(task, 120)
    await pool.stop()


async def test_n_documents_in_n_records_out(kafka_bootstrap, worker_process):
    topics = names("n-in-n-out")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=3)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 12)
    processor, task, pool = await start_processor(kafka_bootstrap, topics, worker_process)
    try:
        records = await collect(kafka_bootstrap, topics["output"], expect_ids=set(ids), settle_s=1.0)
    finally:
        await stop_processor(processor, task, pool)
    assert sorted(r.key.decode() for r in records) == sorted(ids)  # exactly one record per document
    # the content is what the orchestrator gives for the same document
    async with WorkerPool([worker_process]) as direct_pool:
        direct = Orchestrator(direct_pool)
        for record in records:
            value = json.loads(record.value)
            doc_text = document(int(value["id"].removeprefix("doc-")))["text"]
            expected = await direct.recognize(value["id"], doc_text, get_schema("conll03"))
            assert [(e["label"], e["text"], e["start"], e["end"]) for e in value["entities"]] == [
                (e.label, e.text, e.start, e.end) for e in expected.entities
            ]
            assert dict(record.headers)["record-version"] == b"padellm-ner.entity-record/v1"
            assert value["record_version"] == "padellm-ner.entity-record/v1"
    # every offset was committed
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=topics["group"], enable_auto_commit=False)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(topics["input"], p)) or 0 for p in range(3)]
    finally:
        await consumer.stop()
    assert sum(committed) == 12


async def test_whole_documents_through_the_stream(kafka_bootstrap, worker_process):
    """The example documents (articles, a ticket, a report) and a 100,000-character document: one record each,
    read as several windows, every entity's offsets into the document as produced."""
    from padellm_ner.config import REPO_ROOT

    lines = (REPO_ROOT / "examples" / "documents.jsonl").read_text().splitlines()
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    filler = "\n" + " " * 24_000
    docs.append({"id": "long", "text": filler.join(["Peter Blackburn", TEXTS[0], "BRUSSELS 1996-08-22", TEXTS[3]])})
    docs[-1]["text"] += " " * (100_000 - len(docs[-1]["text"]))
    assert len(docs[-1]["text"]) == 100_000
    topics = names("documents")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    await produce(
        kafka_bootstrap,
        topics["input"],
        [json.dumps(d, ensure_ascii=False).encode() for d in docs],
        [d["id"].encode() for d in docs],
    )
    processor, task, pool = await start_processor(kafka_bootstrap, topics, worker_process)
    try:
        records = await collect(kafka_bootstrap, topics["output"], expect_ids={d["id"] for d in docs}, timeout_s=600)
    finally:
        await stop_processor(processor, task, pool)
    texts = {d["id"]: d["text"] for d in docs}
    values = {r.key.decode(): json.loads(r.value) for r in records}
    assert set(values) == set(texts) and len(records) == len(docs)
    for doc_id, value in values.items():
        assert value["windows"] >= 3, doc_id
        assert value["entities"], doc_id
        grounded = [e for e in value["entities"] if e["start"] is not None]  # a repeat beyond the text's has none
        assert len(value["entities"]) - len(grounded) <= value["ungrounded"]
        for entity in grounded:
            assert texts[doc_id][entity["start"] : entity["end"]] == entity["text"]
    assert processor.dead_lettered == 0


async def test_bad_input_goes_to_the_dead_letter_topic(kafka_bootstrap, worker_process):
    topics = names("dead-letters")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=1)
    huge = b'{"id": "h", "text": "' + b"a" * 1_048_300 + b'"}'  # fits the topic, not the input limit
    bad = [
        b"not json",
        b'{"text": "no id"}',
        b'{"id": "x", "text": "' + b"a" * 1_000_000 + b'"}',
        b"\xff\xfe\xfa",
        b'{"id": "y", "text": "EU", "schema": "nope"}',
        b'["a", "list"]',
        b'{"id": "bad id", "text": "EU"}',
        b'{"id": "z", "text": "' + b"a " * 50_001 + b'"}',
        '{"id": "w", "text": "张三毕业于北京大学。", "schema": "resume"}'.encode(),
        b'{"id": "s", "text": "EU", "schema": ["conll03"]}',  # a list where a string belongs
        b'{"id": "u", "text": "Peter \\ud800 Blackburn"}',  # valid JSON with a lone surrogate
        b'{"id": "n", "text": "EU", "extra": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",  # 40 KB of nesting
        b'{"id": 7, "text": "EU"}',
        b'{"id": "l", "text": "EU", "labels": "PER"}',
        huge,
    ]
    good = [json.dumps({"id": f"ok-{i}", "text": "Peter Blackburn"}).encode() for i in range(3)]
    values = [good[0], *bad[:4], good[1], *bad[4:], good[2]]  # the partition must keep flowing past bad records
    await produce(kafka_bootstrap, topics["input"], values)
    processor, task, pool = await start_processor(kafka_bootstrap, topics, worker_process)
    try:
        dead = await collect(kafka_bootstrap, topics["dead"], until=len(bad), timeout_s=120)
        out = await collect(kafka_bootstrap, topics["output"], until=len(good), timeout_s=120)
    finally:
        await stop_processor(processor, task, pool)
    by_source = {int(dict(r.headers)["source-offset"]): r for r in dead}
    bad_offsets = [i for i, v in enumerate(values) if v in bad]
    assert sorted(by_source) == bad_offsets  # one dead letter per bad record
    reasons = {values[o]: dict(by_source[o].headers)["error"].decode() for o in bad_offsets}
    for offset in bad_offsets:  # the original bytes; those of a value over the limit cut to it, marked so
        record, original = by_source[offset], values[offset]
        if len(original) <= 1_000_000:
            assert record.value == original and "truncated-value" not in dict(record.headers)
        else:
            assert record.value == original[:1_000_000] and dict(record.headers)["truncated-value"] == b"true"
    assert "not valid UTF-8 JSON" in reasons[b"not json"] and "missing required field `id`" in reasons[bad[1]]
    assert "limit is 1000000" in reasons[bad[2]] and "not valid UTF-8 JSON" in reasons[b"\xff\xfe\xfa"]
    assert "100002 characters; the limit is 100000" in reasons[bad[7]]
    # a schema no worker serves: FAILED_PRECONDITION, naming the schema and what the workers serve
    assert "FAILED_PRECONDITION" in reasons[bad[8]] and "no worker serves schema resume" in reasons[bad[8]]
    assert dict(by_source[values.index(bad[8])].headers)["error-type"] == b"schema-not-served"
    assert "unknown label schema" in reasons[bad[4]] and "document id" in reasons[bad[6]]
    assert "`$.schema`" in reasons[bad[9]] and "not valid UTF-8 JSON" in reasons[bad[10]]
    assert "nested too deeply" in reasons[bad[11]] and "`$.id`" in reasons[bad[12]] and "`$.labels`" in reasons[bad[13]]
    headers = dict(by_source[values.index(huge)].headers)
    assert headers["truncated-value"] == b"true" and int(headers["original-value-size"]) == len(huge)
    assert headers["original-value-sha256"] == hashlib.sha256(huge).hexdigest().encode()
    assert all(dict(r.headers)["error-type"] == b"invalid-input" for o, r in by_source.items() if values[o] != bad[8])
    assert all(dict(r.headers)["exception-type"] for r in dead)
    assert all(dict(r.headers)["source-topic"].decode() == topics["input"] for r in dead)
    assert sorted(r.key for r in out) == [b"ok-0", b"ok-1", b"ok-2"]
    assert processor.dead_lettered == len(bad)


def start_stream_process(bootstrap, topics, worker_address, *extra, command=(CLI, "stream"), max_in_flight=4):
    """A `padellm-ner stream` process (or `command`, which takes the same arguments) on the test's topics; with
    `max_in_flight=None` at the stream's default."""
    env = {**os.environ, "PADELLM_LOG_LEVEL": "WARNING"}
    in_flight = [] if max_in_flight is None else ["--max-in-flight", str(max_in_flight)]
    process = subprocess.Popen(
        [
            *command,
            "--bootstrap",
            bootstrap,
            "--input-topic",
            topics["input"],
            "--output-topic",
            topics["output"],
            "--dead-letter-topic",
            topics["dead"],
            "--group-id",
            topics["group"],
            "--workers",
            worker_address,
            *in_flight,
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert "stream ready" in process.stdout.readline()
    return process


@pytest.mark.parametrize("exactly_once", [False, True], ids=["at-least-once", "exactly-once"])
async def test_kill_9_mid_stream_then_restart_loses_nothing(kafka_bootstrap, worker_process, exactly_once):
    topics = names("kill9-eos" if exactly_once else "kill9-alo")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=2)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 24)
    extra = ["--exactly-once", "--transactional-id", topics["group"] + "-tx"] if exactly_once else []
    first = start_stream_process(kafka_bootstrap, topics, worker_process, *extra)
    try:
        await collect(kafka_bootstrap, topics["output"], until=4, timeout_s=180)  # some work is done
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    second = start_stream_process(kafka_bootstrap, topics, worker_process, *extra)
    try:
        records = await collect(kafka_bootstrap, topics["output"], expect_ids=set(ids), timeout_s=300, settle_s=3.0)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0
    keys = [r.key.decode() for r in records]
    assert set(keys) == set(ids)  # zero lost documents
    if exactly_once:
        assert sorted(keys) == sorted(ids)  # read_committed: each exactly once


async def test_two_consumers_rebalancing(kafka_bootstrap, worker_process):
    topics = names("rebalance")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]], partitions=4)
    ids = await produce_documents(kafka_bootstrap, topics["input"], 24)
    a = await start_processor(kafka_bootstrap, topics, worker_process, max_in_flight=2)
    await collect(kafka_bootstrap, topics["output"], until=3, timeout_s=180)
    b = await start_processor(kafka_bootstrap, topics, worker_process, max_in_flight=2)  # joins: rebalance
    await collect(kafka_bootstrap, topics["output"], until=10, timeout_s=240)
    await stop_processor(*a)  # leaves: rebalance again, b takes every partition
    try:
        records = await collect(kafka_bootstrap, topics["output"], expect_ids=set(ids), timeout_s=300, settle_s=1.0)
    finally:
        await stop_processor(*b)
    assert {r.key.decode() for r in records} == set(ids)
    assert b[0].processed > 0 and a[0].processed > 0


async def test_kafka_consume_reads_any_record(kafka_bootstrap):
    """`kafka consume` shows a tombstone, non-UTF-8 bytes and JSON, so that it can read the dead-letter topic."""
    topics = names("consume-any")
    await create_topics(kafka_bootstrap, [topics["input"]], partitions=1)
    await produce(kafka_bootstrap, topics["input"], [None, b"\xff\xfe bytes", b'{"id": "d"}'])
    result = await asyncio.to_thread(
        subprocess.run,
        [CLI, "kafka", "consume", "--topic", topics["input"], "--bootstrap", kafka_bootstrap, "--count", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    values = [json.loads(line)["value"] for line in result.stdout.splitlines()]
    assert values == [None, "\\xff\\xfe bytes", {"id": "d"}]


async def test_records_name_the_model_when_the_stream_starts_before_its_worker(kafka_bootstrap):
    """A cluster rollout starts the stream while its worker still loads: the records name the worker's model and
    version all the same (from the workers' answers, not from an Info call at the stream's start)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    topics = names("model-order")
    await create_topics(kafka_bootstrap, [topics["input"], topics["output"], topics["dead"]])
    ids = await produce_documents(kafka_bootstrap, topics["input"], 4)
    stream = start_stream_process(kafka_bootstrap, topics, f"127.0.0.1:{port}")
    await asyncio.sleep(3.0)  # the stream asked for its workers' model and found none
    worker = start_worker_process(port)
    try:
        records = await collect(kafka_bootstrap, topics["output"], expect_ids=set(ids), timeout_s=240)
    finally:
        stream.send_signal(signal.SIGTERM)
        stream.wait(timeout=120)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    version = json.loads((REPO / "models" / "padellm-conll03" / "padellm.json").read_text())["version"]
    assert {r.key.decode() for r in records} == set(ids)
    for record in records:
        value = json.loads(record.value)
        assert (value["model"], value["model_version"]) == ("padellm-conll03", version)
        assert dict(record.headers)["model-version"] == version.encode()
