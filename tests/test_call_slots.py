"""The orchestrator's call slots: a document alone may fill them, documents read together share them evenly, the
oldest waiting document is served first, and cancelled waits hold nothing."""

import asyncio

import pytest

from service.call_slots import CallSlots


async def _hold(slots: CallSlots, token, release: asyncio.Event, running: list) -> None:
    async with slots.call(token):
        running.append(token)
        try:
            await release.wait()
        finally:
            running.remove(token)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_document_alone_takes_every_slot_and_two_share_them():
    slots, release = CallSlots(8), asyncio.Event()
    running: list = []
    with slots.document() as first:
        alone = [asyncio.create_task(_hold(slots, first, release, running)) for _ in range(12)]
        await _settle()
        assert running.count(first) == 8 and slots.held == 8
        with slots.document() as second:
            assert slots.share() == 4
            others = [asyncio.create_task(_hold(slots, second, release, running)) for _ in range(6)]
            await _settle()
            assert running.count(second) == 0  # nothing is taken back: the first holds 8 until calls end
            release.set()
            await asyncio.gather(*alone, *others)
        assert running == [] and slots.held == 0


async def test_freed_slots_go_to_documents_below_their_share_oldest_first():
    slots = CallSlots(4)
    releases = {name: asyncio.Event() for name in ("a", "a later", "b", "c")}
    running: list = []
    with slots.document() as a:
        held_a = [asyncio.create_task(_hold(slots, a, releases["a"], running)) for _ in range(4)]
        await _settle()
        assert running.count(a) == 4
        with slots.document() as b, slots.document() as c:  # shares of 4 // 3 = 1 now: a is above its own
            waiting_c = [asyncio.create_task(_hold(slots, c, releases["c"], running)) for _ in range(2)]
            waiting_b = [asyncio.create_task(_hold(slots, b, releases["b"], running)) for _ in range(2)]
            await _settle()
            more_a = asyncio.create_task(_hold(slots, a, releases["a later"], running))
            await _settle()
            assert running.count(b) == running.count(c) == 0
            releases["a"].set()  # a's four calls end: one slot each, a first (the oldest), then b, then c
            await _settle()
            assert running.count(a) == running.count(b) == running.count(c) == 1 and slots.held == 3
            for event in releases.values():
                event.set()
            await asyncio.gather(*held_a, *waiting_b, *waiting_c, more_a)
    assert slots.held == 0


async def test_per_document_limit_caps_a_document_alone():
    slots, release = CallSlots(8, per_document=3), asyncio.Event()
    running: list = []
    with slots.document() as token:
        tasks = [asyncio.create_task(_hold(slots, token, release, running)) for _ in range(5)]
        await _settle()
        assert len(running) == 3
        release.set()
        await asyncio.gather(*tasks)


async def test_cancelled_waits_hold_no_slot():
    slots, release = CallSlots(1), asyncio.Event()
    running: list = []
    with slots.document() as token:
        holder = asyncio.create_task(_hold(slots, token, release, running))
        await _settle()
        waiting = asyncio.create_task(_hold(slots, token, release, running))
        await _settle()
        waiting.cancel()  # cancelled while it waits
        with pytest.raises(asyncio.CancelledError):
            await waiting
        granted = asyncio.create_task(_hold(slots, token, asyncio.Event(), running))
        await _settle()
        release.set()
        await holder
        granted.cancel()  # its slot was granted as the holder ended; cancelled before it ran, or while it ran
        with pytest.raises(asyncio.CancelledError):
            await granted
        assert slots.held == 0 and running == []
        async with slots.call(token):  # the slot is free again
            assert slots.held == 1


def test_limits_are_checked():
    with pytest.raises(ValueError):
        CallSlots(0)
    with pytest.raises(ValueError):
        CallSlots(4, per_document=0)
