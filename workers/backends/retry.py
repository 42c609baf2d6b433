"""What the HTTP backends share: back-off between retries, how long a failing server's calls are retried, and a
bound on calls in flight that the server's reported capacity can lower."""

from __future__ import annotations

import asyncio
import random
import time


class Backoff:
    """Pauses that double from `first_s` up to `max_s`, each with up to a quarter of jitter (so that the calls
    a restart failed together do not come back together)."""

    def __init__(self, first_s: float = 0.1, max_s: float = 2.0):
        self.pause_s = first_s
        self.max_s = max_s

    def next_pause(self) -> float:
        pause = self.pause_s * (1 + random.random() / 4)
        self.pause_s = min(self.max_s, self.pause_s * 2)
        return min(pause, self.max_s)


class Slots:
    """At most `limit` holders at once, in arrival order; the limit may change while calls hold or wait."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.in_use = 0
        self._free = asyncio.Condition()

    async def set_limit(self, limit: int) -> None:
        async with self._free:
            self.limit = max(1, limit)
            self._free.notify_all()

    async def __aenter__(self) -> None:
        async with self._free:
            await self._free.wait_for(lambda: self.in_use < self.limit)
            self.in_use += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._free:
            self.in_use -= 1
            self._free.notify()


class Outage:
    """Since when the server has been failing (refused connections, 429, 503, ...), cleared by its next answer.
    A failing call is retried only within `window_s` of the failures' start, never past its caller's deadline:
    a blip is absorbed, while during a longer outage calls fail fast and the caller (the stream, which pauses and
    tries the document again) waits, instead of each call spending its document's whole budget on retries."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self.since: float | None = None

    def failed(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def answered(self) -> None:
        self.since = None

    def retry_until(self, deadline: float) -> float:
        """When retrying must stop: the caller's deadline, or sooner where the server has been failing long."""
        return deadline if self.since is None else min(deadline, self.since + self.window_s)
