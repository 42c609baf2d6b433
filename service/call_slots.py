"""Worker calls in flight, shared fairly among the documents being read.

At most `total` calls are in flight, all documents together. A document may hold at most its fair share of them,
`total // documents being read` (and never more than `per_document`), so a document read alone keeps the
workers' batches full with its calls, and documents read together share the slots evenly instead of the longest
holding them all. A freed slot goes to the oldest document that waits and is below its share. The shares move
as documents come and go; nothing is taken back from a document above its new share, it only gets no new slot
until it is below it.

asyncio only (one event loop); waiting is cancellation-safe: a call cancelled while it waits holds nothing, one
cancelled just after its slot was granted gives the slot back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator


class _Document:
    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = 0  # calls in flight
        self.waiters: deque[asyncio.Future[None]] = deque()  # its calls waiting for a slot, in order


class CallSlots:
    def __init__(self, total: int, per_document: int | None = None):
        if total < 1 or (per_document is not None and per_document < 1):
            raise ValueError("call slots need a total and a per-document limit of at least 1")
        self.total = total
        self.per_document = per_document or total
        self.held = 0
        self._documents: dict[object, _Document] = {}  # in the order they began: the oldest first

    def share(self) -> int:
        """What one document may hold now."""
        return max(1, min(self.per_document, self.total // max(1, len(self._documents))))

    @contextlib.contextmanager
    def document(self) -> Iterator[object]:
        """A document being read, for as long as the block runs: its calls take slots with `call(token)`."""
        token = object()
        self._documents[token] = _Document()
        try:
            yield token
        finally:
            document = self._documents.pop(token)
            for waiter in document.waiters:  # its calls cannot outlive it; normally none wait
                waiter.cancel()
            self._grant()  # the others' shares grew

    @contextlib.asynccontextmanager
    async def call(self, token: object) -> AsyncIterator[None]:
        """One worker call of the document `token`: waits for a slot, holds it while the block runs."""
        document = self._documents[token]
        if not document.waiters and self.held < self.total and document.held < self.share():
            self._take(document)
        else:
            waiter = asyncio.get_running_loop().create_future()
            document.waiters.append(waiter)
            try:
                await waiter  # `_grant` took the slot for it
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._give_back(document)  # granted, then cancelled before it ran
                else:
                    with contextlib.suppress(ValueError):
                        document.waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._give_back(document)

    def _take(self, document: _Document) -> None:
        self.held += 1
        document.held += 1

    def _give_back(self, document: _Document) -> None:
        self.held -= 1
        document.held -= 1
        self._grant()

    def _grant(self) -> None:
        """Free slots to waiting calls: the oldest document below its share first."""
        share = self.share()
        for document in self._documents.values():
            while document.waiters and self.held < self.total and document.held < share:
                waiter = document.waiters.popleft()
                if not waiter.done():
                    self._take(document)
                    waiter.set_result(None)
            if self.held >= self.total:
                return
