"""The hubd app on a loopback port, in a thread with its own event loop (tests and benchmarks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from hubd.context import Context
from hubd.server.app import create_app


@contextmanager
def serving(ctx: Context) -> Iterator[str]:
    """Serve ``ctx`` on 127.0.0.1 (a free port) until the block ends; its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(ctx), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
