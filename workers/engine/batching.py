"""Batching of concurrent requests onto one engine thread.

Concurrent callers `submit` items; when the engine thread is free, a batcher task waits a short window so the
other calls of the same fan-out arrive, then hands the queued items to the decoder, which runs on the single
engine thread, never on the event loop. Callers that gave up (cancelled) are not decoded. All torch work of a
worker goes through one batcher, so `run` puts other engine work on the same thread.

Two kinds of decoder:
- per batch (`decode(items) -> outcomes`): up to `max_batch` items at a time, one outcome per item (a result, or
  an exception instance for an item that failed on its own); items that arrive meanwhile wait for the next batch.
- continuous (`continuous=True`, `decode(session)`): the decoder takes items from the `EngineSession` whenever it
  has room (between two forwards, say) and delivers each outcome as soon as it is known, so calls that arrive
  while others decode join them, and a short call does not wait for the longest of its batch.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from padellm_ner.lifecycle import AsyncComponent

T = TypeVar("T")
R = TypeVar("R")

# The embedded worker's continuous batching limits (workers/backends/embedded.py; flags of `padellm-ner worker`)
DEFAULT_MAX_BATCH = 128  # rows decoding together: bounds the running batch's KV cache (about 9 MB a row, fp32)
DEFAULT_MAX_FORWARD_TOKENS = 64  # about where a forward of the shipped model on a CPU turns compute-bound
DEFAULT_MAX_PREFILL_TOKENS = 2048  # new calls read in one prefill: how long running sequences wait at most
# windows' prefix caches kept for the Mention calls that follow their Count calls, in tokens (about 46 KB a token
# in fp32 for the shipped model: 1.5 GB); too small a cache shows as windows read twice
DEFAULT_PREFIX_CACHE_TOKENS = 32768


@dataclass(eq=False)
class Admitted(Generic[T]):
    """A call taken for decoding: its item, and the future its caller awaits."""

    item: T
    future: asyncio.Future


class EngineSession(Generic[T, R]):
    """What a continuous decoder sees of the batcher, from the engine thread: new calls, and where outcomes go."""

    def __init__(self, batcher: MicroBatcher[T, R]):
        self._batcher = batcher

    def take(self, limit: int) -> list[Admitted[T]]:
        """Up to `limit` queued calls whose callers still wait (the oldest first); none while stopping."""
        return self._batcher._take(limit)

    def put_back(self, call: Admitted[T]) -> None:
        """A taken call returned to the head of the queue, undecoded (it did not fit this time)."""
        self._batcher._put_back(call)

    def deliver(self, call: Admitted[T], outcome: R | BaseException) -> None:
        self._batcher._deliver(call, outcome)

    def wanted(self, call: Admitted[T]) -> bool:
        """Whether the caller still waits (it may have given up: deadline, cancellation) and the batcher runs."""
        return not (self._batcher._stopping.is_set() or call.future.done())

    @property
    def stopping(self) -> bool:
        return self._batcher._stopping.is_set()


class MicroBatcher(AsyncComponent, Generic[T, R]):
    def __init__(
        self,
        decode: Callable[[list[T]], Sequence[R | BaseException]] | Callable[[EngineSession[T, R]], None],
        *,
        window_ms: float = 2.0,
        max_batch: int = 64,
        name: str = "engine",
        continuous: bool = False,
        on_error: Callable[[Exception], BaseException] = lambda e: e,
        on_shutdown: Callable[[], BaseException] = lambda: RuntimeError("the batcher is stopped"),
    ):
        self.decode = decode
        self.window_s = window_ms / 1000
        self.max_batch = max_batch
        self.name = name
        self.continuous = continuous
        self.on_error = on_error  # what the undelivered callers of a decode that raised receive
        self.on_shutdown = on_shutdown  # what callers still queued at stop() receive
        self.batches = 0  # per batch: decoded batches; continuous: admissions (for tests, benchmarks and metrics)
        self.sessions = 0  # times the engine thread took up work (continuous: a session admits many times)
        self._pending: deque[Admitted[T]] = deque()  # appended on the event loop, taken on the engine thread
        self._live: list[Admitted[T]] = []  # taken and not yet delivered (engine thread; read by `abandoned`)
        self._arrived: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._stopping = threading.Event()

    def abandoned(self) -> bool:
        """Whether the calls being decoded are no longer wanted: every caller gave up (deadline, cancellation), or
        the batcher is stopping. Decoders check it between steps (from the engine thread) and stop early."""
        return self._stopping.is_set() or all(q.future.done() for q in list(self._live))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _start(self) -> None:
        self._stopping.clear()
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.name)
        self._task = asyncio.create_task(self._serve(), name=f"{self.name}-batcher")

    async def _stop(self) -> None:
        self._stopping.set()  # a decode in progress ends at its next step
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._executor:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)  # a decode in progress ends off the event loop
        for queued in [*self._live, *self._pending]:
            if not queued.future.done():
                queued.future.set_exception(self.on_shutdown())
        self._live.clear()
        self._pending.clear()

    async def submit(self, item: T) -> R:
        if not self.running or self._arrived is None:
            raise self.on_shutdown()
        future = asyncio.get_running_loop().create_future()
        self._pending.append(Admitted(item, future))
        self._arrived.set()
        return await future

    async def run(self, fn: Callable[..., Any], *args) -> Any:
        """Run other engine work (a whole document, say) on the engine thread, between batches."""
        if not self.running:
            raise self.on_shutdown()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _serve(self) -> None:
        assert self._arrived is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            # Let the other calls of the same fan-out arrive, then decode what is there.
            await asyncio.sleep(self.window_s)
            await loop.run_in_executor(self._executor, self._decode_session)

    # --- the engine thread ---------------------------------------------------------------------------------------

    def _decode_session(self) -> None:
        self.sessions += 1
        try:
            if self.continuous:
                cast(Callable[[EngineSession[T, R]], None], self.decode)(EngineSession(self))
            else:
                batch = self._take(self.max_batch)
                if batch:
                    decode = cast(Callable[[list[T]], Sequence[R | BaseException]], self.decode)
                    for queued, outcome in zip(batch, decode([q.item for q in batch])):
                        self._deliver(queued, outcome)
        except Exception as error:  # one failed decode fails its callers, not the loop
            for queued in list(self._live):
                self._deliver(queued, self.on_error(error))
        finally:
            self._live = [q for q in self._live if not q.future.done()]

    def _take(self, limit: int) -> list[Admitted[T]]:
        taken: list[Admitted[T]] = []
        while len(taken) < limit and self._pending and not self._stopping.is_set():
            queued = self._pending.popleft()
            if not queued.future.done():  # callers that gave up are not decoded
                taken.append(queued)
        if taken:
            self.batches += 1
            self._live.extend(taken)
        return taken

    def _put_back(self, queued: Admitted[T]) -> None:
        if queued in self._live:
            self._live.remove(queued)
        self._pending.appendleft(queued)

    def _deliver(self, queued: Admitted[T], outcome: R | BaseException) -> None:
        if queued in self._live:
            self._live.remove(queued)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, queued.future, outcome)


def _resolve(future: asyncio.Future, outcome: Any) -> None:
    if future.done():  # the caller gave up meanwhile
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
