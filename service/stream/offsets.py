"""In-order offset commits with out-of-order completion.

Documents of a partition are processed concurrently and finish in any order. A partition's committable
offset is one past the highest offset below which every record is done (its output acknowledged, or its
dead letter acknowledged), so a crash never skips a record whose output was not written.
"""

from __future__ import annotations

import heapq


class PartitionOffsets:
    def __init__(self) -> None:
        self._pending: list[int] = []  # min-heap of offsets in flight
        self._done: set[int] = set()
        self.committable: int | None = None  # next offset to consume after a restart
        self.committed: int | None = None

    def started(self, offset: int) -> None:
        heapq.heappush(self._pending, offset)
        if self.committable is None:
            self.committable = offset

    def finished(self, offset: int) -> None:
        self._done.add(offset)
        while self._pending and self._pending[0] in self._done:
            top = heapq.heappop(self._pending)
            self._done.discard(top)
            self.committable = top + 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def to_commit(self) -> int | None:
        """The offset to commit now, if it moved since the last commit."""
        if self.committable is not None and self.committable != self.committed:
            return self.committable
        return None
