"""Blocking calls from the event loop, made safe against cancellation."""

from __future__ import annotations

import asyncio
from contextlib import AbstractContextManager
from typing import Any


async def enter_in_thread(manager: AbstractContextManager[Any]) -> None:
    """Enter a context manager whose ``__enter__`` blocks (a file lock) without blocking the loop.

    The thread cannot be cancelled, so on cancellation wait for it and exit at once. Callers
    exit synchronously too: an exit queued on the executor could be cancelled and leak the lock.
    """
    entering = asyncio.ensure_future(asyncio.to_thread(manager.__enter__))
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        await entering
        manager.__exit__(None, None, None)
        raise
