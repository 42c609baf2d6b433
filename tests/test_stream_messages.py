"""The stream's message edge: every input record is a document or invalid input with a reason, never a crash;
every dead letter fits the producer's limit."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from padellm_ner.validation import InvalidInput
from service.stream.messages import MAX_DEAD_LETTER_KEY_BYTES, fit_dead_letter, parse_document


def parse(value: bytes):
    return parse_document(value, default_schema="conll03", max_message_bytes=2_000_000)


def test_a_document_with_defaults():
    document = parse(b'{"id": "d-1", "text": "EU rejects German call ."}')
    assert (document.id, document.schema, document.labels) == ("d-1", "conll03", ["ORG", "MISC", "PER", "LOC"])


@pytest.mark.parametrize(
    "value, reason",
    [
        (b'{"id": "d", "text": "EU", "schema": ["conll03"]}', "`$.schema`"),
        (b'{"id": "d", "text": "Peter \\ud800 Blackburn"}', "not valid UTF-8 JSON"),
        (b'{"id": "d", "text": "EU", "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested too deeply"),
        (b'{"id": "d", "text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", "`$.text`"),
        (b'{"id": 1, "text": "EU"}', "`$.id`"),
        (b'{"id": "d", "text": "EU", "labels": [1]}', "`$.labels[0]`"),
        (b'{"id": "d", "text": "EU", "language": "zh"}', "does not match schema"),
        (b"null", "not a document"),
        (None, "tombstone"),
    ],
)
def test_odd_json_is_invalid_input_with_a_reason(value, reason):
    with pytest.raises(InvalidInput) as error:
        parse(value)
    assert reason in str(error.value)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_document_or_invalid_input(value):
    try:
        parse(value)
    except InvalidInput:
        pass


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(), lambda c: st.lists(c) | st.dictionaries(st.text(), c)
    )
)
def test_any_json_is_a_document_or_invalid_input(body):
    import json

    try:
        parse(json.dumps({"id": "d", "text": "EU", "schema": body}).encode())
    except InvalidInput:
        pass


def test_a_dead_letter_too_large_to_send_is_cut_with_its_size_and_hash():
    value, key = b"v" * 1_500_000, b"k" * 10_000
    cut_key, cut_value, headers = fit_dead_letter(key, value, 1_000_000)
    assert len(cut_value) == 1_000_000 and len(cut_key) == MAX_DEAD_LETTER_KEY_BYTES
    named = dict(headers)
    assert named["truncated-value"] == b"true" and named["original-value-size"] == b"1500000"
    assert named["original-value-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert named["original-key-size"] == b"10000"
    assert fit_dead_letter(b"k", b"small", 1_000_000) == (b"k", b"small", [])


class _Record:
    def __init__(self, value: bytes, offset: int = 5):
        self.key, self.value, self.offset = b"k", value, offset


class _FailingOrchestrator:
    """Raises the given error on every call, counting the calls."""

    def __init__(self, error: BaseException):
        self.error, self.calls = error, 0

    async def recognize(self, *args):
        self.calls += 1
        raise self.error


def _processor(orchestrator):
    from service.stream.processor import StreamConfig, StreamProcessor

    config = StreamConfig(bootstrap="unused", input_topic="in", output_topic="out", dead_letter_topic="dead")
    return StreamProcessor(config, orchestrator)


async def test_an_unexpected_error_ends_in_a_dead_letter_with_its_type():
    from aiokafka import TopicPartition

    processor = _processor(_FailingOrchestrator(KeyError("a bug")))
    topic, key, value, headers = await processor._outcome(
        TopicPartition("in", 0), _Record(b'{"id": "d", "text": "EU"}')
    )
    named = dict(headers)
    assert (topic, key, value) == ("dead", b"k", b'{"id": "d", "text": "EU"}')
    assert named["error-type"] == b"internal-error" and named["exception-type"] == b"KeyError"
    assert b"a bug" in named["error"] and processor.dead_lettered == 1


async def test_a_document_past_its_deadline_is_tried_three_times_then_dead_lettered():
    import grpc
    from aiokafka import TopicPartition

    from service.stream.processor import DEADLINE_ATTEMPTS

    error = grpc.aio.AioRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, grpc.aio.Metadata(), grpc.aio.Metadata(), "slow")
    orchestrator = _FailingOrchestrator(error)
    processor = _processor(orchestrator)
    topic, _, _, headers = await processor._outcome(TopicPartition("in", 0), _Record(b'{"id": "d", "text": "EU"}'))
    assert topic == "dead" and orchestrator.calls == DEADLINE_ATTEMPTS == 3
    assert dict(headers)["error-type"] == b"deadline" and processor._overloaded_until == 0.0  # no pause


class _EchoOrchestrator:
    async def recognize(self, document_id, text, schema, labels=None):
        from service.records import EntityRecord

        return EntityRecord(document_id, [], [], "m", "v", schema.name)


@pytest.mark.parametrize("policy", ["process", "dead-letter"])
async def test_a_second_record_of_an_id_follows_the_duplicate_policy(policy):
    from aiokafka import TopicPartition

    from service.stream.processor import DuplicateIds, StreamConfig, StreamProcessor

    config = StreamConfig("unused", "in", "out", "dead", duplicate_ids=DuplicateIds(policy))
    processor, tp = StreamProcessor(config, _EchoOrchestrator()), TopicPartition("in", 0)
    first = await processor._outcome(tp, _Record(b'{"id": "d", "text": "EU"}', offset=1))
    again = await processor._outcome(tp, _Record(b'{"id": "d", "text": "EU"}', offset=1))  # a re-delivery
    second = await processor._outcome(tp, _Record(b'{"id": "d", "text": "Other text"}', offset=2))
    assert first[0] == again[0] == "out" and "duplicate-of" not in dict(again[3])
    assert processor.duplicates == 1
    if policy == "process":
        assert second[0] == "out" and dict(second[3])["duplicate-of"] == b"in/0/1"
    else:
        assert second[0] == "dead" and dict(second[3])["error-type"] == b"duplicate-id"


async def test_a_document_past_its_budget_is_retried_then_dead_lettered():
    from aiokafka import TopicPartition

    from padellm_ner.errors import ErrorCode, PadellmError

    orchestrator = _FailingOrchestrator(
        PadellmError("the caller's deadline has passed", code=ErrorCode.DEADLINE_EXCEEDED)
    )
    processor = _processor(orchestrator)
    topic, _, _, headers = await processor._outcome(TopicPartition("in", 0), _Record(b'{"id": "d", "text": "EU"}'))
    assert topic == "dead" and orchestrator.calls == 3 and dict(headers)["error-type"] == b"deadline"
