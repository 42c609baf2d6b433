"""Offset bookkeeping of the stream processor, without a broker: in-order commits and the commit/revoke race."""

import asyncio

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from service.stream.offsets import PartitionOffsets
from service.stream.processor import StreamConfig, StreamProcessor


@given(st.permutations(list(range(20))), st.integers(min_value=0, max_value=1000))
def test_committable_offset_never_passes_an_unfinished_record(order, base):
    tracker = PartitionOffsets()
    for offset in range(base, base + 20):
        tracker.started(offset)
    done: set[int] = set()
    for index in order:
        tracker.finished(base + index)
        done.add(base + index)
        committable = tracker.committable
        assert all(offset in done for offset in range(base, committable))  # everything below it is done
        assert committable == base + 20 or committable not in done  # and it stops at the first gap
    assert tracker.to_commit() == base + 20 and tracker.in_flight == 0


class _RevokingConsumer:
    """A consumer whose commit is interrupted by a rebalance that revokes the partition (as aiokafka can do:
    the coordinator runs the rebalance listener while a commit waits)."""

    def __init__(self, processor: StreamProcessor):
        self.processor = processor
        self.committed: list[dict] = []

    async def commit(self, offsets):
        self.committed.append(dict(offsets))
        await asyncio.sleep(0)
        for tp in list(self.processor.offsets):
            self.processor.offsets.pop(tp)  # what on_revoked does once the partition is handed over


async def test_a_partition_revoked_during_a_commit_does_not_break_the_commit():
    processor = StreamProcessor(
        StreamConfig(bootstrap="unused", input_topic="in", output_topic="out", dead_letter_topic="dead"),
        orchestrator=None,
    )
    processor.consumer = _RevokingConsumer(processor)
    tp = TopicPartition("in", 2)
    tracker = processor.offsets.setdefault(tp, PartitionOffsets())
    tracker.started(7)
    tracker.finished(7)
    await processor._commit(due_only=False)
    assert processor.consumer.committed == [{tp: 8}]
    assert tracker.committed == 8 and tp not in processor.offsets
