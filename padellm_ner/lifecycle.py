"""One lifecycle for every long-lived component (worker pool, backends, micro-batcher, stream processor, servers):
idempotent async `start()` / `stop()`, usable as `async with`, composed by a process with `AsyncExitStack`; and
the process's one signal handler."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Self

log = logging.getLogger(__name__)


class AsyncComponent:
    """Subclasses implement `_start` and `_stop`. `start` on a started component and `stop` on a stopped one do
    nothing; a `_start` that fails is followed by `_stop`, so that nothing it opened stays open."""

    _started: bool = False

    async def _start(self) -> None:
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    @property
    def started(self) -> bool:
        return self._started

    async def start(self) -> Self:
        if self._started:
            return self
        try:
            await self._start()
        except BaseException:
            await asyncio.shield(self._stop())
            raise
        self._started = True
        return self

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._stop()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def shutdown_requested() -> asyncio.Event:
    """An event set on SIGTERM or SIGINT: the process's one signal handler, installed by its main coroutine."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request, sig)
    return event


class HealthWatch(AsyncComponent):
    """Runs `check()` every `interval_s` (and once at start) and calls `on_change(healthy)` when its answer
    changes: how a server's health follows what it depends on. A check that raises counts as unhealthy."""

    def __init__(
        self,
        check: Callable[[], Awaitable[bool]],
        on_change: Callable[[bool], Awaitable[None]],
        *,
        name: str,
        interval_s: float = 5.0,
    ):
        self.check, self.on_change, self.name, self.interval_s = check, on_change, name, interval_s
        self.healthy: bool | None = None
        self._task: asyncio.Task | None = None

    async def _start(self) -> None:
        await self._update()
        self._task = asyncio.create_task(self._loop(), name=f"{self.name}-health")

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self._update()

    async def _update(self) -> None:
        try:
            healthy = await self.check()
        except Exception as error:
            log.warning("%s health check failed: %r", self.name, error)
            healthy = False
        if healthy != self.healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "%s %s", self.name, "healthy" if healthy else "down")
            self.healthy = healthy
            await self.on_change(healthy)
