"""`hubd daemon`: the HTTP server, the job workers and the watch-list scheduler.

Runs until SIGTERM or Ctrl-C, then stops cleanly: jobs in flight go back to the queue and their
transfers resume from the bytes on disk when a daemon next runs them.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable
from contextlib import AsyncExitStack

from aiohttp import web

from .context import Context
from .errors import ConfigError
from .jobs import requeue_interrupted, work
from .locations import heartbeat, register
from .refs import RepoRef
from .runtime.openai import ServedModel, add_routes, llama_server
from .runtime.prepare import prepare
from .server.app import create_app
from .watch import schedule


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


async def run_daemon(
    ctx: Context, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve on host:port (0 = any free port) until a stop signal arrives."""
    tls = tls_context(ctx)
    async with AsyncExitStack() as stack:
        app = create_app(ctx)
        if ctx.settings.llm:
            models = await asyncio.to_thread(_prepare_llms, ctx)
            upstream, _ = await stack.enter_async_context(llama_server(models, n_ctx=2048))
            add_routes(app, upstream, [m.alias for m in models])
        await _serve(ctx, app, host, port, tls, on_ready)


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


async def _serve(
    ctx: Context,
    app: web.Application,
    host: str,
    port: int,
    tls: ssl.SSLContext | None,
    on_ready: Callable[[str], None] | None,
) -> None:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, ssl_context=tls).start()
        node, poll = ctx.settings.node_name, ctx.settings.jobs_poll
        await asyncio.to_thread(requeue_interrupted, ctx, node)
        # In `nodes`: the other daemons of a shared catalog fetch this store's blobs from here.
        await asyncio.to_thread(register, ctx, runner.addresses[0][1])
        background = [asyncio.create_task(work(ctx, node, poll)) for _ in range(ctx.settings.jobs)]
        background.append(asyncio.create_task(schedule(ctx, poll)))
        background.append(asyncio.create_task(heartbeat(ctx)))
        bound = runner.addresses[0]
        if on_ready is not None:
            on_ready(f"{'https' if tls else 'http'}://{bound[0]}:{bound[1]}")
        await stop.wait()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
