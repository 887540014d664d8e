"""`hubd daemon`: the HTTP server, the job workers and the watch-list scheduler.

Runs until SIGTERM or Ctrl-C, then stops cleanly: jobs in flight go back to the queue and their
transfers resume from the bytes on disk when a daemon next runs them.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from http import HTTPStatus
from typing import Any

from aiohttp import web

from .cluster.jobs import requeue_interrupted, work
from .cluster.locations import heartbeat, register
from .cluster.watch import schedule
from .context import Context
from .errors import ConfigError
from .refs import RepoRef
from .runtime.openai import ServedModel, add_routes, llama_server
from .runtime.prepare import prepare
from .server.app import create_app, error_response

log = logging.getLogger("hubd.daemon")
# Seconds a connection may take to send a request's headers, after connecting or between
# requests; what aiohttp would otherwise wait for ever.
IDLE_TIMEOUT = 15.0
# Descriptors kept free of connections: the catalog, mirrors' sockets and partial files. Each
# connection may hold two (its socket and the blob it is sent).
RESERVED_FDS = 128
LISTEN_BACKLOG = 1024  # a thousand clients connecting at once wait here, not in SYN retries
ACCEPT_RETRY = 0.1  # seconds between accepts while out of descriptors
BUSY_BODY = b'{"error": "too many connections", "code": "ServiceUnavailable"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n"
    b"X-Error-Code: ServiceUnavailable\r\nX-Error-Message: too many connections\r\n\r\n%s"
) % (len(BUSY_BODY), BUSY_BODY)


class Throttled:
    """A warning logged at most once per ``interval`` seconds, saying how many were held back.

    What keeps a flood (accept failing for want of descriptors, connections refused beyond the
    cap, malformed requests) from writing the log full: one line a minute, not one per attempt.
    """

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last = -interval
        self._held = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            self._held += 1
            return
        held = f" (and {self._held} more in the last {self.interval:.0f} s)" if self._held else ""
        self._last, self._held = now, 0
        log.warning("%s%s", message % args, held)


class Limits:
    """The connection cap and the throttled warnings one daemon's connections share."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0
        self.refused = Throttled()
        self.malformed = Throttled()
        self.accept_failed = Throttled()

    def admit(self) -> bool:
        if self.open >= self.cap:
            self.refused.warning("%d connections open: refusing more (503)", self.open)
            return False
        self.open += 1
        return True


def connection_cap() -> int:
    """Connections this process has descriptors for, from its (raised) RLIMIT_NOFILE.

    The soft limit goes up to the hard one first (systemd's default soft limit is 1024, its
    hard limit far higher); the cap then leaves RESERVED_FDS, and a descriptor on each
    connection for the blob it may be sent.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 16 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a kernel maximum below the hard limit: keep the soft one
            pass
    return max(8, (soft - RESERVED_FDS) // 2)


class Connection(web.RequestHandler):
    """aiohttp's protocol with the connection cap, and JSON for requests it cannot parse.

    aiohttp answers an unparsable request (a 9 KB URL, 200 headers) itself, before any
    middleware, in plain text, logging a traceback each time; here it is the usual JSON error
    and at most a line a minute.
    """

    __slots__ = ("_admitted", "_limits")

    def __init__(self, limits: Limits, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._limits.admit():
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(BUSY)
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted:
            self._admitted = False
            self._limits.open -= 1
            super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:  # a bug: aiohttp logs it with its traceback (and refuses if mid-response)
            super().handle_error(request, status, exc, message)
            text = "internal error"
        else:
            text = message or str(exc) or HTTPStatus(status).phrase
            self._limits.malformed.warning("malformed request from %s: %s", request.remote, text)
            if request.writer.output_size > 0:
                raise ConnectionError("the response is under way: no room for an error")
        response = error_response(status, _error_code(status), text)
        response.force_close()
        return response


def tls_context(ctx: Context) -> ssl.SSLContext | None:
    """HTTPS when server.tls_cert and server.tls_key are set; both or neither."""
    cert, key = ctx.settings.tls_cert, ctx.settings.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("server.tls_cert and server.tls_key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from None
    return context


def _error_code(status: int) -> str:
    """400 -> "BadRequest": the X-Error-Code of an error aiohttp answers itself."""
    try:
        return "".join(HTTPStatus(status).phrase.title().split()).replace("-", "")
    except ValueError:
        return f"HTTP{status}"


async def run_daemon(
    ctx: Context,
    host: str,
    port: int,
    on_ready: Callable[[str], None] | None = None,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
) -> None:
    """Serve on host:port (0 = any free port) until a stop signal arrives.

    ``idle_timeout``: seconds a connection may take to send a request's headers.
    """
    tls = tls_context(ctx)
    async with AsyncExitStack() as stack:
        app = create_app(ctx)
        if ctx.settings.llm:
            models = await asyncio.to_thread(_prepare_llms, ctx)
            upstream, _ = await stack.enter_async_context(llama_server(models, n_ctx=2048))
            add_routes(app, upstream, [m.alias for m in models])
        await _serve(ctx, app, host, port, tls, on_ready, idle_timeout)


def _prepare_llms(ctx: Context) -> list[ServedModel]:
    """Every [[llm]] entry resolved, verified and preflighted; the daemon refuses otherwise."""
    return [
        ServedModel(
            entry.alias,
            prepare(
                ctx,
                RepoRef.parse(entry.repo),
                pattern=entry.file,
                lora=RepoRef.parse(entry.lora) if entry.lora else None,
            ),
        )
        for entry in ctx.settings.llm
    ]


async def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, for the address family ``host`` resolves to first."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, *_, address = infos[0]
    listener = socket.create_server(address, family=family, backlog=LISTEN_BACKLOG)
    listener.setblocking(False)
    return listener


async def _accept(
    listener: socket.socket,
    factory: Callable[[], asyncio.Protocol],
    tls: ssl.SSLContext | None,
    limits: Limits,
    handshake_timeout: float,
) -> None:
    """Accept connections for as long as the daemon runs.

    Not asyncio's own accept loop: out of descriptors, that one logs a traceback and schedules
    a retry for every connection waiting in the backlog, and every retry does the same; this one
    logs a line a minute and tries again a little later.
    """
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[Any]] = set()  # referenced until done: tasks are held weakly

    def opened(task: asyncio.Task[Any]) -> None:
        pending.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a reset, a bad handshake
            log.debug("connection not opened: %s", task.exception())

    while True:
        try:
            conn, _ = await loop.sock_accept(listener)
        except ConnectionError:  # the client gave up before its connection was accepted
            continue
        except OSError as exc:  # EMFILE mostly: let the connections accepted free some
            limits.accept_failed.warning("cannot accept connections: %s", exc)
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        opening = asyncio.create_task(
            loop.connect_accepted_socket(
                factory,
                conn,
                ssl=tls,
                ssl_handshake_timeout=handshake_timeout if tls else None,
            )
        )
        pending.add(opening)
        opening.add_done_callback(opened)


async def _serve(
    ctx: Context,
    app: web.Application,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    on_ready: Callable[[str], None] | None,
    idle_timeout: float,
) -> None:
    runner = web.AppRunner(app, shutdown_timeout=5)
    await runner.setup()
    assert runner.server is not None  # noqa: S101 - setup() made it; None only before setup
    manager, limits = runner.server, Limits(connection_cap())
    loop = asyncio.get_running_loop()

    def connection() -> Connection:
        # keepalive_timeout also closes a connection that has not sent a whole request's
        # headers that long after connecting (aiohttp starts the timer on connecting).
        return Connection(
            limits, manager, loop=loop, access_log=None, keepalive_timeout=idle_timeout
        )

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    background: list[asyncio.Task[None]] = []
    listener: socket.socket | None = None
    try:
        listener = await _listen(host, port)
        background.append(
            asyncio.create_task(_accept(listener, connection, tls, limits, idle_timeout))
        )
        bound = listener.getsockname()
        node, poll = ctx.settings.node_name, ctx.settings.jobs_poll
        await asyncio.to_thread(requeue_interrupted, ctx, node)
        # In `nodes`: the other daemons of a shared catalog fetch this store's blobs from here.
        await asyncio.to_thread(register, ctx, bound[1])
        background += [asyncio.create_task(work(ctx, node, poll)) for _ in range(ctx.settings.jobs)]
        background.append(asyncio.create_task(schedule(ctx, poll)))
        background.append(asyncio.create_task(heartbeat(ctx)))
        if on_ready is not None:
            on_ready(f"{'https' if tls else 'http'}://{bound[0]}:{bound[1]}")
        await stop.wait()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if listener is not None:
            listener.close()
        await runner.cleanup()
