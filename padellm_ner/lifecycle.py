"""One lifecycle for every long-lived component (worker pool, backends, micro-batcher, stream processor, servers):
idempotent async `start()` / `stop()`, usable as `async with`, composed by a process with `AsyncExitStack`; and
the process's one signal handler."""

from __future__ import annotations

import asyncio
import logging
import signal
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
