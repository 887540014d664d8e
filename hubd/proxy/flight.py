"""One upstream transfer of one file, streamed to every client that asks while it arrives.

The bytes go through the store's hashing writer (``.partial``, lock, resume, the ranged parallel
transfer of ``HfSource.download``) and are read back from that ``.partial`` by each client's
response as they land, a Range from where it starts. No response ever ends on unverified bytes:
each holds back its last byte until the blob's digest matched and it was published. When it does
not match, every response still streaming is aborted mid-body (the client's size check fails, so
no client keeps a file hubd refused), the partial is discarded, and a later request starts over.
Requests for the same content share one flight (:class:`Flights`); across processes the writer's
lock serialises them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from functools import partial

from aiohttp import web

from ..context import Context
from ..errors import HubdError, IntegrityError, UpstreamError
from ..sources.base import RemoteFile
from ..sources.huggingface import HfSource
from ..store import BlobWriter, Expected, Store
from ..threads import enter_in_thread

log = logging.getLogger("hubd.proxy")


class StreamingWriter(BlobWriter):
    """The filesystem store's writer, its bytes readable from the ``.partial`` as soon as
    written. On object storage it writes the local copy (the store's cache layout), which
    :func:`transfer` then uploads through the bucket's own verifying writer."""

    def __init__(self, store: Store, expected: Expected, moved: Callable[[int], None]) -> None:
        super().__init__(store, expected)
        self._moved = moved

    def write(self, chunk: bytes) -> None:
        super().write(chunk)
        self._file.flush()  # to the page cache, where the readers' descriptors see it
        self._moved(self.offset)

    def restart(self) -> None:
        super().restart()
        self._moved(0)


class Flight:
    """The transfer of one file and how far it got; responses read it with :meth:`respond`."""

    def __init__(self, store: Store, label: str, size: int) -> None:
        self.store = store
        self.label = label
        self.size = size
        self.offset = 0  # bytes on disk in the partial, in order
        self.digest: str | None = None  # set once verified and published
        self.failure: HubdError | None = None
        self.task: asyncio.Task[str] | None = None
        self._partial: str | None = None
        self._changed = asyncio.Event()

    def moved(self, offset: int) -> None:
        self.offset = offset
        self._wake()

    def opened(self, partial_path: str) -> None:
        self._partial = partial_path
        self._wake()

    def finished(self, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            self.failure = UpstreamError(f"{self.label}: the transfer was stopped")
        elif isinstance(task.exception(), HubdError):
            self.failure = task.exception()  # type: ignore[assignment]
        elif task.exception() is not None:
            self.failure = UpstreamError(f"{self.label}: transfer failed: {task.exception()}")
        else:
            self.digest = task.result()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _change(self) -> None:
        await self._changed.wait()

    async def _sendable(self, pos: int, end: int) -> int:
        """How far a response at ``pos`` of ``[.., end)`` may send: what has arrived, short of
        ``end`` until the blob is verified."""
        while True:
            if self.failure is not None:
                raise self.failure
            if self.digest is not None:
                return end
            limit = min(self.offset, end - 1)
            if limit > pos:
                return limit
            await self._change()

    async def _reader(self) -> int:
        """A descriptor on the bytes: the partial while it is written, else the blob."""
        while True:
            if self.failure is not None:
                raise self.failure
            if self.digest is not None:
                return self.store.open_blob(self.digest)
            if self._partial is not None:
                try:
                    return os.open(self._partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:  # published or discarded just now: look again
                    pass
            await self._change()

    async def respond(
        self,
        request: web.Request,
        span: tuple[int, int] | None,
        headers: dict[str, str],
        served: dict[str, int],
    ) -> web.StreamResponse:
        """A GET of the file (or one Range of it) answered from the flight, by sendfile from
        the partial (the page cache) as far as it is sendable.

        Headers go out with the first sendable bytes, so a transfer that fails before any
        arrive is still a plain error response; after that, a failure aborts the connection.
        """
        start, count = span or (0, self.size)
        end = start + count
        response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
        if span is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{self.size}"
        response.content_type = "application/octet-stream"
        response.content_length = count
        blob = os.fdopen(await self._reader(), "rb")
        try:
            pos = start
            if count:
                await self._sendable(pos, end)
            await response.prepare(request)
            loop = asyncio.get_running_loop()
            try:
                while pos < end:
                    limit = await self._sendable(pos, end)
                    if request.transport is None:
                        raise ConnectionResetError("connection lost")
                    sent = await loop.sendfile(request.transport, blob, pos, limit - pos)
                    if not sent:  # the source restarted the file: wait for its bytes again
                        await self._change()
                    pos += sent
                    served["bytes"] += sent
                if not count:
                    await self._verified()
            except HubdError as failure:
                log.warning("%s: aborting a client at byte %d: %s", self.label, pos, failure)
                if request.transport is not None:
                    request.transport.abort()
                return response
            await response.write_eof()
            return response
        finally:
            blob.close()

    async def _verified(self) -> None:
        while self.digest is None:
            if self.failure is not None:
                raise self.failure
            await self._change()


async def transfer(
    ctx: Context, flight: Flight, source: HfSource, repo_id: str, commit: str, item: RemoteFile
) -> str:
    """Fetch ``item`` into the store through ``flight`` (under the store's shared guard, so gc
    leaves it alone); the verified sha256. A mismatch discards the partial."""
    guard = ctx.store.guard(exclusive=False)
    await enter_in_thread(guard)
    try:
        loop = asyncio.get_running_loop()
        expected = Expected(f"{repo_id}/{item.path}", item.size, item.sha256, item.git_oid)

        def moved(offset: int) -> None:  # called from the writer's thread
            loop.call_soon_threadsafe(flight.moved, offset)

        writer = StreamingWriter(ctx.store, expected, moved)
        await enter_in_thread(writer)  # another process fetching the same blob finishes first
        try:
            if writer.present is not None:
                return writer.present
            flight.moved(writer.offset)  # what an interrupted transfer left is read from too
            flight.opened(str(writer.partial))
            url = source.file_url(repo_id, commit, item.path)
            async with source.session() as session:
                await source.download(session, item, url, writer, lambda _: None)
            digest = await asyncio.to_thread(writer.commit)
        except BaseException as exc:
            if isinstance(exc, IntegrityError) or writer.offset == 0:
                writer.discard()  # bad bytes, or none: nothing to resume from
            raise
        finally:
            writer.__exit__(None, None, None)  # its lock: the bucket's writer takes it next
        if not ctx.store.local_blobs:  # verified on this disk: now into the bucket
            local = ctx.store.blob_path(digest)
            await asyncio.to_thread(ctx.store.adopt, local, digest, item.size)
        return digest
    finally:
        guard.__exit__(None, None, None)


class Flights:
    """The daemon's transfers in flight, one per content; at most ``concurrency`` at once."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.started = 0  # upstream transfers begun
        self.failed = 0  # of which the bytes did not match their digest
        self._inflight: dict[str, Flight] = {}
        self._slots = asyncio.Semaphore(ctx.settings.concurrency)

    def join(
        self, key: str, source: HfSource, repo_id: str, commit: str, item: RemoteFile
    ) -> Flight:
        """The flight fetching this content, started now if none is under way."""
        flight = self._inflight.get(key)
        if flight is not None:
            return flight
        flight = Flight(self.ctx.store, f"{repo_id}/{item.path}", item.size)
        self._inflight[key] = flight
        self.started += 1

        async def run() -> str:
            async with self._slots:
                return await transfer(self.ctx, flight, source, repo_id, commit, item)

        flight.task = asyncio.ensure_future(run())
        flight.task.add_done_callback(partial(self._done, key, flight))
        return flight

    def _done(self, key: str, flight: Flight, task: asyncio.Task[str]) -> None:
        self._inflight.pop(key, None)
        flight.finished(task)
        if isinstance(flight.failure, IntegrityError):
            self.failed += 1
            log.error("pull-through: %s refused: %s", flight.label, flight.failure.message)
        elif flight.failure is not None:
            log.warning("pull-through: %s failed: %s", flight.label, flight.failure.message)

    async def close(self) -> None:
        """Stop every transfer (the daemon is shutting down); partials stay to resume from."""
        tasks = [f.task for f in self._inflight.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
