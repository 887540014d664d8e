"""Model info answers kept while the catalog they were built from has not changed.

A thousand clients asking for one repo's model info at once each cost two catalog queries, up to
three small blob reads (``config``) and a JSON encoding; kept, an answer costs a dictionary
lookup. An answer is kept as the bytes sent, under the (repo, revision, expand) asked, and only
while the catalog's version (:class:`hubd.catalog.db.Commits`) is the one it was built at: a
mirror, push or `hubd rm` by any process moves the version, and every kept answer goes, so a
moved ref is seen by the next request. Authorization is never kept: the auth middleware judges
every request before it reaches the handler. Nothing is kept on PostgreSQL (no version to
compare) or for an answer the pull-through built from upstream.

Requests that miss together share one build (:meth:`Answers.answer`): after any commit (the
daemon's own heartbeat is one) a thousand clients waiting on one repo cost one build, not a
thousand queries at once on a catalog that serializes them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from ..catalog.db import Commits

Key = tuple[str, str | None, frozenset[str]]
Build = Callable[[], Awaitable[tuple[bytes, bool]]]  # the body, and whether it may be kept
LIMIT = 4096  # answers kept at most, the least recently used dropped first


class Answers:
    def __init__(self, commits: Commits, limit: int = LIMIT) -> None:
        self._commits = commits
        self._limit = limit
        self._version: int | None = None
        self._kept: OrderedDict[Key, bytes] = OrderedDict()
        self._building: dict[tuple[Key, int | None], asyncio.Future[bytes]] = {}

    async def answer(self, key: Key, build: Build) -> bytes:
        """The kept answer for ``key``, else the one being built, else a new build's.

        The build runs as a task of its own, so a client that goes away does not cancel it
        for the others waiting; its error, if any, is every waiter's answer.
        """
        version = self.version()  # read first: a commit while building means nothing is kept
        kept = self.get(key, version)
        if kept is not None:
            return kept
        flight = self._building.get((key, version))
        if flight is None:
            flight = asyncio.ensure_future(self._build(key, version, build))
            self._building[(key, version)] = flight
            flight.add_done_callback(lambda done: self._landed(key, version, done))
        return await asyncio.shield(flight)

    async def _build(self, key: Key, version: int | None, build: Build) -> bytes:
        body, keep = await build()
        if keep:
            self.put(key, body, version)
        return body

    def _landed(self, key: Key, version: int | None, done: asyncio.Future[bytes]) -> None:
        del self._building[(key, version)]
        if not done.cancelled():
            done.exception()  # retrieved: an error nobody waited for is not logged as lost

    def version(self) -> int | None:
        """The catalog's version now; what was kept at another one is dropped."""
        current = self._commits.version()
        if current != self._version:
            self._kept.clear()
            self._version = current
        return current

    def get(self, key: Key, version: int | None) -> bytes | None:
        if version is None or version != self._version:
            return None
        body = self._kept.get(key)
        if body is not None:
            self._kept.move_to_end(key)
        return body

    def put(self, key: Key, body: bytes, version: int | None) -> None:
        """Keep ``body``, built from the catalog at ``version``, unless it has moved since."""
        if version is None or version != self._version or version != self._commits.version():
            return
        self._kept[key] = body
        if len(self._kept) > self._limit:
            self._kept.popitem(last=False)
