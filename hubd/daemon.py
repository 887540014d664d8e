"""`hubd daemon`: serve the registry until SIGTERM or Ctrl-C, then stop cleanly.

For now the daemon is the HTTP server; the job queue and the watch list will run here too.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from aiohttp import web

from .context import Context
from .server.app import create_app


async def run_daemon(
    ctx: Context, host: str, port: int, on_ready: Callable[[str], None] | None = None
) -> None:
    """Serve on host:port (0 = any free port) until a stop signal arrives."""
    runner = web.AppRunner(create_app(ctx), access_log=None, shutdown_timeout=5)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0]
        if on_ready is not None:
            on_ready(f"http://{bound[0]}:{bound[1]}")
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
