"""The micro-batcher that the embedded backend and the TGI stand-in share (no model: a recording decode)."""

import asyncio
import threading

import pytest

from workers.engine.batching import MicroBatcher


class Recorder:
    def __init__(self):
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def decode(self, items):
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_concurrent_submissions_are_decoded_in_one_batch_off_the_event_loop():
    recorder = Recorder()
    batcher = MicroBatcher(recorder.decode, window_ms=20, name="test-engine")
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(i) for i in (0, 2, 4, 6)))
        assert results == [0, 20, 40, 60] and recorder.batches == [[0, 2, 4, 6]] and batcher.batches == 1
        assert all(name.startswith("test-engine") for name in recorder.threads)
        with pytest.raises(ValueError, match="odd 3"):  # an item's own failure reaches only its caller
            await asyncio.gather(batcher.submit(8), batcher.submit(3))
        assert await batcher.run(lambda a, b: a + b, 1, 2) == 3
    finally:
        await batcher.stop()


async def test_max_batch_and_cancelled_callers():
    recorder = Recorder()
    batcher = MicroBatcher(recorder.decode, window_ms=20, max_batch=2)
    await batcher.start()
    try:
        gone = asyncio.create_task(batcher.submit(100))
        await asyncio.sleep(0)  # queued
        gone.cancel()
        assert await asyncio.gather(batcher.submit(0), batcher.submit(2), batcher.submit(4)) == [0, 20, 40]
        assert 100 not in sum(recorder.batches, []) and max(len(b) for b in recorder.batches) <= 2
    finally:
        await batcher.stop()


async def test_a_failing_decode_fails_its_batch_and_the_loop_goes_on():
    calls = []

    def decode(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return items

    batcher = MicroBatcher(decode, window_ms=5, on_error=lambda e: LookupError(f"decoding failed: {e}"))
    await batcher.start()
    try:
        with pytest.raises(LookupError, match="decoding failed: out of memory"):
            await batcher.submit(1)
        assert await batcher.submit(2) == 2
    finally:
        await batcher.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await batcher.submit(3)


class LongDecode:
    """A decode of 100 steps of 50 ms that, as the engine's, stops early when its batch is abandoned."""

    def __init__(self):
        self.steps = 0
        self.batcher: MicroBatcher | None = None

    def decode(self, items):
        import time

        for _ in range(100):
            if self.batcher is not None and self.batcher.abandoned():
                break
            time.sleep(0.05)
            self.steps += 1
        return list(items)


async def test_a_decode_whose_callers_all_gave_up_stops_early():
    long = LongDecode()
    batcher = MicroBatcher(long.decode, window_ms=1)
    long.batcher = batcher
    await batcher.start()
    try:
        caller = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.3)
        caller.cancel()  # the caller's deadline passed
        await asyncio.sleep(0.3)
        assert long.steps < 20  # not the 100 steps (5 s) of a full decode
        assert await batcher.submit(2) == 2  # the batcher goes on with the next batch
    finally:
        await batcher.stop()


async def test_stop_ends_a_decode_in_progress():
    import time

    long = LongDecode()
    batcher = MicroBatcher(long.decode, window_ms=1)
    long.batcher = batcher
    await batcher.start()
    caller = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0.3)
    started = time.perf_counter()
    await batcher.stop()  # SIGTERM in the middle of a 5 s decode
    assert time.perf_counter() - started < 1.0 and long.steps < 20
    caller.cancel()
