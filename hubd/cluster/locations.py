"""Which node holds which blob, for daemons that share a catalog but not a store.

Every node records the blobs its store holds (``blob_locations``) when it records a revision or
fetches a blob, and forgets them when gc deletes them. A daemon asked for a file of a verified
revision whose blob it lacks fetches it first from a node that holds it
(``GET /api/hubd/blobs/{sha256}`` on that node's ``node.url``), through the store's hashing
writer, so the bytes are verified again. Requests for the same blob share one fetch: within a
daemon through :class:`BlobFetches`, across processes through the writer's lock.

A revision's signatures and provenance chain live in the store of the node that recorded it;
a daemon asked for them (``…/attestations``) copies them first from a node that has them,
checked like a peer's (:func:`ensure_attestations`). ``hubd run`` of a revision another node
recorded fetches its files and signatures first (:func:`make_local`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from urllib.parse import urlsplit

from ..catalog.nodes import holders, record_locations, register_node, sibling_nodes, touch_node
from ..config import derived_node_url
from ..context import Context
from ..errors import (
    AccessDenied,
    BlobUnavailable,
    ConfigError,
    IntegrityError,
    NotFound,
    UpstreamError,
)
from ..sources.base import Attestations, RemoteFile
from ..sources.registry import node_token, source_for
from ..store import Expected
from ..threads import enter_in_thread
from ..trust.admission import admit
from ..trust.keys import signature_dir, stored_signatures, write_atomic
from ..trust.provenance import chain_path, write_chain

log = logging.getLogger("hubd.cluster.locations")
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


HEARTBEAT = 60.0  # seconds between a daemon's refreshes of its nodes row


async def heartbeat(ctx: Context) -> None:
    """Keep this daemon's ``last_seen`` fresh: the other nodes ask only live ones."""
    while True:
        await asyncio.sleep(HEARTBEAT)
        await asyncio.to_thread(_touch, ctx)


def _touch(ctx: Context) -> None:
    with ctx.catalog.begin() as session:
        touch_node(session, ctx.settings.node_name)


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


async def ensure_attestations(
    ctx: Context, repo_id: str, commit: str, files: dict[str, str]
) -> None:
    """Give this node the revision's signatures and SLSA chain if only other nodes have them.

    Asks the other nodes of the catalog (``?local=1``: they answer from their own store, so two
    nodes never ask each other in a circle) and keeps the first non-empty answer that passes
    admission: every signature and statement by a trusted key holds over ``files`` and the
    trust policy's signers are there. A node that fails or has nothing leaves it to the next;
    none at all leaves this node without attestations, as before.
    """
    if stored_signatures(ctx, repo_id, commit) or chain_path(ctx, repo_id, commit).exists():
        return
    for name, url in await asyncio.to_thread(_siblings, ctx):
        source = source_for(ctx.settings, url, node_token(ctx.settings) or False)
        try:
            async with source.session() as session:
                carried = await source.attestations(session, repo_id, commit, local=True)
            if carried is None or not (carried.signatures or carried.statements):
                continue
            await asyncio.to_thread(_keep, ctx, repo_id, commit, files, carried)
            return
        except HOLDER_FAILURES as exc:
            log.warning("%s@%s: attestations from node %s: %s", repo_id, commit, name, exc)


def _keep(
    ctx: Context, repo_id: str, commit: str, files: dict[str, str], carried: Attestations
) -> None:
    admitted = admit(ctx, repo_id, commit, files, carried, None)
    directory = signature_dir(ctx, repo_id, commit)
    for file_name, data in admitted.signatures.items():
        write_atomic(directory / file_name, data)
    if admitted.statements:
        write_chain(ctx, repo_id, commit, admitted.statements)


def _siblings(ctx: Context) -> list[tuple[str, str]]:
    with ctx.catalog() as session:
        return sibling_nodes(session, exclude=ctx.settings.node_name)


def make_local(
    ctx: Context, repo_id: str, commit: str, files: dict[str, tuple[str, int]], paths: list[str]
) -> None:
    """Make ``paths`` of a revision another node recorded usable here (blocking).

    ``files`` is the whole revision (path -> (sha256, size)). The blobs come from the nodes that
    hold them, the snapshot is linked in this store and the signatures are copied, so that
    ``hubd run`` and ``[[llm]]`` on any node of the catalog load what one node mirrored.
    """

    async def fetch() -> None:
        for path in paths:
            sha256, size = files[path]
            await ensure_blob(ctx, sha256, size, f"{repo_id}@{commit[:12]} {path}")
        digests = {p: sha for p, (sha, _) in files.items()}
        await ensure_attestations(ctx, repo_id, commit, digests)

    asyncio.run(fetch())
    ctx.store.link_snapshot(repo_id, commit, [(p, files[p][0]) for p in paths])


def _holders(ctx: Context, sha256: str) -> list[tuple[str, str]]:
    with ctx.catalog() as session:
        return holders(session, sha256, exclude=ctx.settings.node_name)


def _record(ctx: Context, sha256: str) -> None:
    with ctx.catalog.begin() as session:
        record_locations(session, ctx.settings.node_name, [sha256])


async def _fetch(ctx: Context, node_url: str, sha256: str, size: int, label: str) -> None:
    """One holder's copy into the store, resuming a partial left by an earlier attempt."""
    source = source_for(ctx.settings, node_url, node_token(ctx.settings) or False)
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
