"""Micro-batching of concurrent requests onto one engine thread.

Concurrent callers `submit` items; a batcher task takes the first item, waits a short window so the other
calls of the same fan-out arrive, and hands everything queued (up to `max_batch`) to `decode`, which runs on
the single engine thread, never on the event loop. `decode` returns one outcome per item: a result, or an
exception instance for an item that failed on its own. Callers that gave up (cancelled) are not decoded. All
torch work of a worker goes through one batcher, so `run` puts other engine work on the same thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from padellm_ner.lifecycle import AsyncComponent

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Queued(Generic[T]):
    item: T
    future: asyncio.Future


class MicroBatcher(AsyncComponent, Generic[T, R]):
    def __init__(
        self,
        decode: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        window_ms: float = 2.0,
        max_batch: int = 64,
        name: str = "engine",
        on_error: Callable[[Exception], BaseException] = lambda e: e,
        on_shutdown: Callable[[], BaseException] = lambda: RuntimeError("the batcher is stopped"),
    ):
        self.decode = decode
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.name = name
        self.on_error = on_error  # what the callers of a batch whose decode raised receive
        self.on_shutdown = on_shutdown  # what callers still queued at stop() receive
        self.batches = 0  # decoded batches (for tests, benchmarks and metrics)
        self._queue: asyncio.Queue[_Queued[T]] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._live: list[_Queued[T]] = []  # the batch being decoded
        self._stopping = threading.Event()

    def abandoned(self) -> bool:
        """Whether the batch being decoded is no longer wanted: every caller gave up (deadline, cancellation), or
        the batcher is stopping. Decoders check it between steps (from the engine thread) and stop early."""
        return self._stopping.is_set() or all(q.future.done() for q in self._live)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _start(self) -> None:
        self._stopping.clear()
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._task = asyncio.create_task(self._loop(), name=f"{self.name}-batcher")

    async def _stop(self) -> None:
        self._stopping.set()  # a decode in progress ends at its next step
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue and not self._queue.empty():
            queued = self._queue.get_nowait()
            if not queued.future.done():
                queued.future.set_exception(self.on_shutdown())
        if self._executor:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)  # a decode in progress ends off the event loop

    async def submit(self, item: T) -> R:
        if not self.running:
            raise self.on_shutdown()
        future = asyncio.get_running_loop().create_future()
        await self._started_queue().put(_Queued(item, future))
        return await future

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        """Run other engine work (a whole document, say) on the engine thread, between batches."""
        if not self.running:
            raise self.on_shutdown()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _started_queue(self) -> asyncio.Queue[_Queued[T]]:
        if self._queue is None:
            raise self.on_shutdown()
        return self._queue

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._started_queue()
        while True:
            batch = [await queue.get()]
            # Let the other calls of the same fan-out arrive, then take what is there. (No wait_for around
            # Queue.get: on Python 3.11 a timeout racing a delivery can lose the item.)
            await asyncio.sleep(self.window_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            live = [q for q in batch if not q.future.done()]  # callers that gave up are not decoded
            if not live:
                continue
            self._live = live
            try:
                outcomes = await loop.run_in_executor(self._executor, self.decode, [q.item for q in live])
            except Exception as error:  # one failed batch fails its callers, not the loop
                for queued in live:
                    if not queued.future.done():
                        queued.future.set_exception(self.on_error(error))
                continue
            self.batches += 1
            for queued, outcome in zip(live, outcomes):
                if queued.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    queued.future.set_exception(outcome)
                else:
                    queued.future.set_result(outcome)
