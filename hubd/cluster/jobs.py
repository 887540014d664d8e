"""The job queue: mirrors queued in the catalog and run by daemon workers.

A job is claimed in one transaction (``FOR UPDATE SKIP LOCKED`` where the database has it; SQLite
serialises writers with ``BEGIN IMMEDIATE``), so no job runs twice. A daemon that stops or dies
mid-job leaves it to be requeued when it starts again; the mirror itself resumes from the bytes
already on disk.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from ..catalog.models import Job, JobState, utcnow
from ..catalog.nodes import sibling_nodes
from ..context import Context
from ..errors import Forbidden, HubdError, NotFound
from ..ops.mirror import mirror_requested
from ..ops.requests import MirrorRequest
from ..sources.registry import check_url, list_peers

log = logging.getLogger("hubd.cluster.jobs")
ACTIVE = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class JobInfo:
    id: int
    repo: str
    options: dict[str, Any]
    state: JobState
    node: str | None
    attempts: int
    bytes_done: int
    bytes_total: int
    error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


def _info(job: Job) -> JobInfo:
    return JobInfo(
        job.id,
        job.repo,
        dict(job.options),
        job.state,
        job.node,
        job.attempts,
        job.bytes_done,
        job.bytes_total,
        job.error,
        job.result,
        job.created_at,
        job.started_at,
        job.finished_at,
    )


def check_source(ctx: Context, from_: str | None) -> None:
    """A job's ``from`` must be a configured peer (by name or URL) or another node of this catalog.

    Anything else would let whoever may queue a job make this daemon fetch from any URL it
    names (with auth.required off, anyone who reaches it). Blocking: reads the catalog.
    """
    if from_ is None:
        return
    peers = list_peers(ctx)
    if any(from_ == p.name for p in peers):
        return
    with ctx.catalog() as session:
        siblings = sibling_nodes(session, exclude=ctx.settings.node_name)
    known = {p.url.rstrip("/") for p in peers} | {url.rstrip("/") for _, url in siblings}
    if check_url(from_) not in known:
        raise Forbidden(
            f"from: {from_[:200]!r} is neither a configured peer nor a node of this catalog "
            "(`hubd peers add NAME URL` on the daemon's host makes it one)"
        )


def enqueue(ctx: Context, request: MirrorRequest) -> JobInfo:
    """Queue ``request``; the same repo and options already waiting is that job."""
    ref, options = request.ref, request.options()
    with ctx.catalog.begin() as session:
        for job in session.scalars(select(Job).where(Job.repo == str(ref), Job.state.in_(ACTIVE))):
            if job.options == options:
                return _info(job)
        job = Job(repo=str(ref), options=options, state=JobState.QUEUED)
        session.add(job)
        session.flush()
        return _info(job)


def list_jobs(ctx: Context, limit: int = 100) -> list[JobInfo]:
    with ctx.catalog() as session:
        jobs = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit))
        return [_info(j) for j in jobs]


def get_job(ctx: Context, job_id: int) -> JobInfo:
    with ctx.catalog() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return _info(job)


def job_metrics(ctx: Context) -> tuple[dict[JobState, int], int, int]:
    """(jobs by state, bytes mirrored by finished jobs, jobs failed on integrity)."""
    with ctx.catalog() as session:
        rows = session.execute(select(Job.state, func.count()).group_by(Job.state))
        by_state = {state: n for state, n in rows}
        mirrored = sum(
            int((r or {}).get("bytes_transferred", 0))
            for r in session.scalars(select(Job.result).where(Job.state == JobState.DONE))
        )
        integrity = session.scalar(
            select(func.count()).where(Job.state == JobState.FAILED, Job.error.like("%mismatch%"))
        )
    return by_state, mirrored, int(integrity or 0)


def claim(ctx: Context, node: str) -> JobInfo | None:
    """Take the oldest queued job for ``node`` (blocking; one transaction)."""
    with ctx.catalog.begin() as session:
        job = session.scalar(
            select(Job)
            .where(Job.state == JobState.QUEUED)
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job is None:
            return None
        job.state, job.node, job.started_at = JobState.RUNNING, node, utcnow()
        job.attempts += 1
        return _info(job)


def requeue_interrupted(ctx: Context, node: str) -> int:
    """Jobs this node was running when it stopped go back to the queue."""
    with ctx.catalog.begin() as session:
        result = session.execute(
            update(Job)
            .where(Job.state == JobState.RUNNING, Job.node == node)
            .values(state=JobState.QUEUED, node=None)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def _finish(ctx: Context, job_id: int, state: JobState, **values: Any) -> None:
    with ctx.catalog.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state=state, finished_at=utcnow() if state != JobState.QUEUED else None, **values
            )
        )


class JobProgress:
    """Progress events kept in memory; the worker writes them to the catalog once a second."""

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def begin(self, files: int, total_bytes: int) -> None:
        self.total += total_bytes

    def file_started(self, path: str, size: int, offset: int) -> None:
        self.done += offset

    def advance(self, path: str, nbytes: int) -> None:
        self.done += nbytes

    def file_done(self, path: str) -> None:
        pass

    def end(self) -> None:
        pass


async def run_job(ctx: Context, job: JobInfo) -> None:
    """Run a claimed job to done, failed, or (if the daemon stops) back to queued."""
    progress = JobProgress()

    async def report() -> None:
        while True:
            await asyncio.sleep(1)
            await asyncio.to_thread(_write_progress, ctx, job.id, progress)

    reporter = asyncio.create_task(report())
    try:
        # Checked again: a job queued before requests were typed may hold anything.
        request = MirrorRequest.parse({**job.options, "repo": job.repo})
        result = await mirror_requested(ctx, request, progress)
    except HubdError as exc:
        log.warning("job %d (%s) failed: %s", job.id, job.repo, exc)
        _finish(ctx, job.id, JobState.FAILED, error=str(exc), bytes_done=progress.done)
    except asyncio.CancelledError:
        _finish(ctx, job.id, JobState.QUEUED, node=None, bytes_done=progress.done)
        raise
    except Exception as exc:
        log.exception("job %d (%s) crashed", job.id, job.repo)
        _finish(ctx, job.id, JobState.FAILED, error=f"internal error: {exc}")
    else:
        _finish(
            ctx,
            job.id,
            JobState.DONE,
            result=result.model_dump(mode="json"),
            bytes_done=progress.total,
            bytes_total=progress.total,
        )
    finally:
        reporter.cancel()


def _write_progress(ctx: Context, job_id: int, progress: JobProgress) -> None:
    with ctx.catalog.begin() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == JobState.RUNNING)
            .values(bytes_done=progress.done, bytes_total=progress.total)
        )


async def work(ctx: Context, node: str, poll: float) -> None:
    """One worker: claim, run, repeat; idle workers look again every ``poll`` seconds."""
    while True:
        job = await asyncio.to_thread(claim, ctx, node)
        if job is None:
            await asyncio.sleep(poll)
            continue
        log.info("job %d: mirroring %s", job.id, job.repo)
        await run_job(ctx, job)
