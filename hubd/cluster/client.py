"""Talking to a running hubd daemon: queue a mirror and follow it to the end.

When `daemon.url` is configured, state-changing CLI commands go through here, so the daemon's
workers (and its store) do the work; otherwise they run in-process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from ..catalog.models import JobState
from ..errors import (
    AccessDenied,
    Forbidden,
    HubdError,
    InvalidRequest,
    NotFound,
    UpstreamError,
)
from ..ops.requests import MirrorRequest


class DaemonClient:
    def __init__(self, url: str, token_file: Path | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.headers: dict[str, str] = {}
        if token_file is not None:
            try:
                self.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
            except OSError as exc:
                raise HubdError(f"cannot read the daemon token {token_file}: {exc}") from None
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout, headers=self.headers) as session,
                session.request(method, self.url + path, json=body) as resp,
            ):
                data = await resp.json(content_type=None)
                if resp.status >= 400:
                    error = {401: AccessDenied, 403: Forbidden, 404: NotFound, 400: InvalidRequest}
                    message = data.get("error") if isinstance(data, dict) else str(data)
                    raise error.get(resp.status, UpstreamError)(f"daemon {self.url}: {message}")
                return data
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise UpstreamError(f"cannot reach the daemon at {self.url}: {exc}") from None

    async def submit(self, request: MirrorRequest) -> dict[str, Any]:
        body = {"repo": request.repo, **request.options()}
        job: dict[str, Any] = await self._call("POST", "/api/hubd/jobs", body)
        return job

    async def follow(
        self,
        job_id: int,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 0.5,
    ) -> dict[str, Any]:
        """Poll the job until it is done or failed; a failure raises with the daemon's reason."""
        while True:
            job: dict[str, Any] = await self._call("GET", f"/api/hubd/jobs/{job_id}")
            if on_update is not None:
                on_update(job)
            if job["state"] == JobState.FAILED:
                raise HubdError(f"job {job_id} on {self.url} failed: {job['error']}")
            if job["state"] == JobState.DONE:
                return job
            await asyncio.sleep(poll)
