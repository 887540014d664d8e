"""The watch list: repos the daemon keeps in sync by queueing a mirror on a schedule."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from ..catalog.models import Watch, utcnow
from ..context import Context
from ..errors import InvalidRequest, NotFound
from ..ops.requests import MirrorRequest
from ..refs import RepoRef
from .jobs import enqueue

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_every(text: str) -> int:
    """'90s', '15m', '6h', '1d' -> seconds (at least a minute, at most a year)."""
    match = re.fullmatch(r"(\d+)([smhd])", text.strip())
    seconds = int(match[1]) * _UNITS[match[2]] if match else 0
    if not 60 <= seconds <= 366 * 86400:
        raise InvalidRequest(f"--every takes 1m to 366d like 30m, 6h or 1d, not {text!r}")
    return seconds


@dataclass(frozen=True)
class WatchInfo:
    repo: str
    every_seconds: int
    next_run_at: datetime
    last_job_id: int | None


def _info(watch: Watch) -> WatchInfo:
    return WatchInfo(watch.repo, watch.every_seconds, watch.next_run_at, watch.last_job_id)


def add_watch(ctx: Context, repo: str, every_seconds: int) -> WatchInfo:
    """Watch ``repo`` (again: a new interval); its first sync is due at once."""
    ref = str(RepoRef.parse(repo))
    with ctx.catalog.begin() as session:
        watch = session.scalar(select(Watch).where(Watch.repo == ref))
        if watch is None:
            watch = Watch(repo=ref, every_seconds=every_seconds, next_run_at=utcnow())
            session.add(watch)
        watch.every_seconds = every_seconds
        session.flush()
        return _info(watch)


def list_watches(ctx: Context) -> list[WatchInfo]:
    with ctx.catalog() as session:
        return [_info(w) for w in session.scalars(select(Watch).order_by(Watch.repo))]


def remove_watch(ctx: Context, repo: str) -> None:
    with ctx.catalog.begin() as session:
        ref = str(RepoRef.parse(repo))
        if not session.execute(delete(Watch).where(Watch.repo == ref)).rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"{ref} is not watched", hint="see `hubd watch ls`")


def enqueue_due(ctx: Context, now: datetime | None = None) -> list[int]:
    """Queue a mirror for every watch that is due; returns the job ids (blocking)."""
    now = now or utcnow()
    with ctx.catalog() as session:
        due = [w.repo for w in session.scalars(select(Watch).where(Watch.next_run_at <= now))]
    jobs = []
    for repo in due:
        job = enqueue(ctx, MirrorRequest(repo=repo))
        with ctx.catalog.begin() as session:
            watch = session.scalar(select(Watch).where(Watch.repo == repo))
            if watch is not None:
                watch.next_run_at = now + timedelta(seconds=watch.every_seconds)
                watch.last_job_id = job.id
        jobs.append(job.id)
    return jobs


async def schedule(ctx: Context, poll: float) -> None:
    """Check the watch list every ``poll`` seconds, for as long as the daemon runs."""
    while True:
        await asyncio.to_thread(enqueue_due, ctx)
        await asyncio.sleep(poll)
