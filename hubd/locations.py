"""Which node holds which blob, for daemons that share a catalog but not a store.

Every node records the blobs its store holds (``blob_locations``) when it records a revision or
fetches a blob, and forgets them when gc deletes them. A daemon asked for a file of a verified
revision whose blob it lacks fetches it first from a node that holds it
(``GET /api/hubd/blobs/{sha256}`` on that node's ``node.url``), through the store's hashing
writer, so the bytes are verified again. Requests for the same blob share one fetch: within a
daemon through :class:`BlobFetches`, across processes through the writer's lock.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from urllib.parse import urlsplit

from .catalog.queries import holders, record_locations, register_node
from .config import derived_node_url
from .context import Context
from .errors import (
    AccessDenied,
    BlobUnavailable,
    ConfigError,
    IntegrityError,
    NotFound,
    UpstreamError,
)
from .mirror import enter_in_thread
from .peers import node_token
from .sources.base import RemoteFile
from .sources.huggingface import HfSource
from .store import Expected

log = logging.getLogger("hubd.locations")
# What one holder failing this way leaves to the next holder.
HOLDER_FAILURES = (UpstreamError, IntegrityError, NotFound, AccessDenied)


def blob_url(node_url: str, sha256: str) -> str:
    return f"{node_url.rstrip('/')}/api/hubd/blobs/{sha256}"


def register(ctx: Context, port: int) -> str:
    """Announce this daemon in ``nodes`` (blocking); the URL registered.

    A derived node.url takes the port actually bound (``--port 0`` picks any free one).
    """
    s = ctx.settings
    url = s.node_url if s.node_url != derived_node_url(s) else derived_node_url(s, port)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(f"node.url {url!r} is not an http(s)://host[:port] URL")
    with ctx.catalog.begin() as session:
        register_node(session, s.node_name, url)
    return url


class BlobFetches:
    """A daemon's fetches of missing blobs in flight: one per blob, however many requests ask.

    Waiting in asyncio rather than on the writer's file lock keeps the default thread pool
    free: a burst of requests for one blob would otherwise block every worker on the lock,
    including the one the fetch itself needs to write.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._inflight: dict[str, asyncio.Task[None]] = {}

    async def ensure(self, sha256: str, size: int, label: str) -> None:
        """:func:`ensure_blob`, joining the fetch already under way for this blob if any."""
        if self.ctx.store.has_blob(sha256, size):
            return
        task = self._inflight.get(sha256)
        if task is None:
            task = asyncio.create_task(ensure_blob(self.ctx, sha256, size, label))
            self._inflight[sha256] = task
            task.add_done_callback(partial(self._done, sha256))
        await asyncio.shield(task)  # a client that goes away does not cancel the others' fetch

    def _done(self, sha256: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(sha256, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone


async def ensure_blob(ctx: Context, sha256: str, size: int, label: str) -> None:
    """Make this node's store hold the blob, fetching it from a node that does.

    Raises BlobUnavailable when no other node can supply it (none holds it, or every holder is
    unreachable or sends something else).
    """
    if ctx.store.has_blob(sha256, size):
        return
    guard = ctx.store.guard(exclusive=False)  # gc must not delete it before it is recorded
    await enter_in_thread(guard)
    try:
        candidates = await asyncio.to_thread(_holders, ctx, sha256)
        failures = []
        for name, url in candidates:
            try:
                await _fetch(ctx, url, sha256, size, label)
                break
            except HOLDER_FAILURES as exc:
                log.warning("%s: fetching from node %s failed: %s", label, name, exc.message)
                failures.append(f"{name}: {exc.message}")
        else:
            if not ctx.store.has_blob(sha256, size):  # a concurrent request may have got it
                held = "; ".join(failures) or "no other node holds it"
                raise BlobUnavailable(
                    f"{label}: blob {sha256} is not on this node ({ctx.settings.node_name}) "
                    f"and no node could supply it ({held})",
                    hint="start a node that holds it, or mirror the repo again",
                )
        await asyncio.to_thread(_record, ctx, sha256)
    finally:
        guard.__exit__(None, None, None)


def _holders(ctx: Context, sha256: str) -> list[tuple[str, str]]:
    with ctx.catalog() as session:
        return holders(session, sha256, exclude=ctx.settings.node_name)


def _record(ctx: Context, sha256: str) -> None:
    with ctx.catalog.begin() as session:
        record_locations(session, ctx.settings.node_name, [sha256])


async def _fetch(ctx: Context, node_url: str, sha256: str, size: int, label: str) -> None:
    """One holder's copy into the store, resuming a partial left by an earlier attempt."""
    s = ctx.settings
    source = HfSource(
        node_url,
        token=node_token(s) or False,
        timeout=s.timeout,
        parts=s.parts,
        part_size=s.part_size,
        retries=s.retries,
    )
    writer = ctx.store.writer(Expected(label, size, sha256))
    await enter_in_thread(writer)  # a concurrent fetch of the same blob finishes first
    try:
        if writer.present is not None:
            return
        try:
            async with source.session() as session:
                await source.download(
                    session,
                    RemoteFile(label, size, None, sha256),
                    blob_url(node_url, sha256),
                    writer,
                    lambda _: None,
                )
            await asyncio.to_thread(writer.commit)
        except BaseException as exc:
            if isinstance(exc, IntegrityError) or writer.offset == 0:
                writer.discard()  # bad bytes or none: nothing to resume from
            raise
    finally:
        writer.__exit__(None, None, None)
