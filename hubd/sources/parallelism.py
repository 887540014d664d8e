"""How many streams one transfer keeps open: found by measuring the link, not fixed.

A CDN caps each connection (the Hub's serves a stream at a few tens of MB/s), so a transfer is
as fast as the streams it keeps in flight, and streams past what the link carries only cost
memory and the upstream's patience. The window starts at a few streams and doubles while the
measured rate grows; once a doubling buys too little it goes back to the window that gave the
best rate and stays there. A 429 or 503 halves it and settles it too. A settled window probes
again after :data:`REPROBE` seconds (a daemon's transfers outlive the link's mood). Ranged parts
and small files' single streams all take a place in it.

Memory stays flat whatever the file size or the window: every part holds its bytes of one
budget from the moment it is asked for until it is written, and a part's size is the budget
shared by the window (more streams, smaller parts).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

BUDGET = 48 * 1024 * 1024  # bytes in flight or waiting for the hash, across one transfer's files
MIN_PART = 1024 * 1024  # below this a part costs more in requests than it buys
INITIAL = 8  # streams to start with (bench/link.py: 8 reaches a capped link sooner than 4)
INTERVAL = 0.25  # seconds of bytes behind each judgement of the rate
GROWTH = 1.2  # a doubling must raise the rate by this factor to be kept
REPROBE = 60.0  # seconds a settled window stays before it is measured and grown again
log = logging.getLogger("hubd.sources")


class Parallelism:
    """The window of streams in flight for one transfer, and the byte budget they share."""

    def __init__(
        self,
        ceiling: int,
        part_size: int,
        *,
        budget: int = BUDGET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.part_size = part_size
        self.budget = budget
        self.window = min(INITIAL, self.ceiling)
        self.settled = self.window == self.ceiling
        self._settled_at = clock()
        self.streams = 0  # in flight now
        self.buffered = 0  # bytes held by them, received or not
        self._clock = clock
        self._freed = asyncio.Event()
        self._since: float | None = None  # start of the interval being measured
        self._bytes = 0
        self._best = 0.0
        self._best_window = self.window

    def part_bytes(self) -> int:
        """Bytes of the next ranged part: the window's share of the budget."""
        return min(self.part_size, max(MIN_PART, self.budget // self.window))

    def _room(self, nbytes: int) -> bool:
        return self.streams == 0 or (
            self.streams < self.window and self.buffered + nbytes <= self.budget
        )

    async def acquire(self, nbytes: int) -> None:
        """Wait for a place for one stream holding ``nbytes``. Granted at once when nothing of
        the transfer is in flight, so a part larger than the budget still goes."""
        while not self._room(nbytes):
            self._freed.clear()
            await self._freed.wait()
        self.streams += 1
        self.buffered += nbytes

    def release(self, nbytes: int) -> None:
        self.streams -= 1
        self.buffered -= nbytes
        self._freed.set()

    @asynccontextmanager
    async def holding(self, nbytes: int) -> AsyncIterator[None]:
        """A place for one stream while the block runs (a small file's single GET)."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    def feed(self, received: int) -> None:
        """Count bytes just received; every :data:`INTERVAL` judge the rate they came at."""
        now = self._clock()
        if self._since is None:
            self._since = now
        self._bytes += received
        elapsed = now - self._since
        if self.settled and now - self._settled_at >= REPROBE and self.window < self.ceiling:
            self.settled, self._best, self._best_window = False, 0.0, self.window
            self._since, self._bytes = now, 0
            return
        if self.settled or elapsed < INTERVAL:
            return
        rate = self._bytes / elapsed
        self._since, self._bytes = now, 0
        if rate >= self._best * GROWTH:
            self._best, self._best_window = rate, self.window
            self._resize(min(self.ceiling, self.window * 2), settle=self.window == self.ceiling)
        else:
            self._resize(self._best_window, settle=True)

    def busy(self) -> None:
        """The upstream refused a stream (429 or 503): halve the window, settled until a probe."""
        self._resize(max(1, self.window // 2), settle=True)

    def _resize(self, window: int, *, settle: bool) -> None:
        if window != self.window:
            log.debug("streams in flight: %d -> %d", self.window, window)
            self._since, self._bytes = None, 0  # the next interval measures the new window
        if settle:  # a refusal while settled puts the next probe off again
            self._settled_at = self._clock()
        self.window, self.settled = window, self.settled or settle
        self._freed.set()
