"""The hubd HTTP server: the Hugging Face API plus hubd's own endpoints under /api/hubd/.

Every error leaves as JSON with the right status and, for the Hub's own errors, the
``X-Error-Code`` header huggingface_hub maps to its exceptions. A client never sees a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from .. import __version__
from ..catalog.db import Commits
from ..catalog.listing import catalog_page
from ..catalog.models import JobState
from ..catalog.views import manifest, provenance_hop
from ..cluster.jobs import check_source, enqueue, get_job, job_metrics, list_jobs
from ..cluster.locations import BlobFetches, ensure_attestations
from ..cluster.tokens import token_scope
from ..context import Context
from ..errors import AccessDenied, Forbidden, HubdError, InvalidRequest, RangeNotSatisfiable
from ..ops.requests import MirrorRequest
from ..proxy.pull import PullThrough
from ..refs import RepoRef
from ..trust.keys import stored_signatures
from ..trust.provenance import Attestations, chain_path, read_chain
from . import account, browse, hfapi, upload
from . import web as pages
from .answers import Answers
from .hfapi import CONTEXT, SERVED

SCOPE = web.RequestKey("scope", str)
EPOCH, END_OF_TIME = datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)

log = logging.getLogger("hubd.server")
RULES = ("deny", "allow", "audit", "trust", "size")  # what a pull-through refusal is counted under
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str) -> web.Response:
    """The JSON error every failure leaves as, with the Hub's headers.

    ``X-Error-Code`` is what huggingface_hub maps to its exceptions and ``X-Error-Message``
    what it shows; both are there for HEAD too, which has no body. Header values are kept
    to one printable ASCII line of bounded length, whatever the message quotes.
    """
    headers = {"X-Error-Code": code, "X-Error-Message": header_safe(message)}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="hubd"'
    body = {"error": message, "code": code}
    return web.json_response(body, status=status, headers=headers)


def header_safe(text: str, limit: int = 500) -> str:
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    return "".join(c if c.isprintable() else " " for c in escaped)[:limit]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HubdError as exc:
        response = error_response(exc.http_status, hfapi.wire_code(request, exc), exc.message)
        if isinstance(exc, RangeNotSatisfiable):
            response.headers["Content-Range"] = f"bytes */{exc.size}"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, type(exc).__name__.removeprefix("HTTP"), exc.reason)
    except Exception:
        log.exception("unhandled error serving %s", request.path)
        return error_response(500, "InternalError", "internal error")


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def hubd_catalog(request: web.Request) -> web.Response:
    """GET /api/hubd/catalog?since=ISO&limit=N: revisions in mirror order, for incremental sync."""
    ctx = request.app[CONTEXT]
    try:
        since = _since(request.query["since"]) if "since" in request.query else None
        limit = min(int(request.query.get("limit", "500")), 5000)
    except (ValueError, OverflowError):
        raise InvalidRequest(
            "since must be an ISO 8601 time from 1970 to 9999, limit a number"
        ) from None
    if limit < 1:
        raise InvalidRequest("limit must be positive")

    def page() -> list[dict[str, Any]]:
        with ctx.catalog() as session:
            return catalog_page(session, since, limit)

    rows = await asyncio.to_thread(page)
    return web.json_response({"revisions": rows, "next": rows[-1]["mirrored_at"] if rows else None})


def _since(text: str) -> datetime:
    """An ISO time as UTC (naive ones are UTC), in the range every catalog backend can hold."""
    since = datetime.fromisoformat(text)
    since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    if not EPOCH <= since < END_OF_TIME:
        raise ValueError(text)
    return since


def _revision_of(request: web.Request) -> tuple[str, str]:
    repo = RepoRef.parse(f"{request.match_info['org']}/{request.match_info['name']}")
    return repo.repo_id, request.match_info["rev"]


async def hubd_manifest(request: web.Request) -> web.Response:
    """GET /api/hubd/models/{org}/{name}/revision/{rev}/manifest: files, sizes, sha256."""
    repo_id, rev = _revision_of(request)
    revision, refs = await asyncio.to_thread(hfapi.revision_of, request.app[CONTEXT], repo_id, rev)
    return web.json_response(manifest(repo_id, revision, refs).model_dump(mode="json"))


async def hubd_provenance(request: web.Request) -> web.Response:
    """GET /api/hubd/models/{org}/{name}/revision/{rev}/provenance: the chain of custody."""
    repo_id, rev = _revision_of(request)
    revision, _ = await asyncio.to_thread(hfapi.revision_of, request.app[CONTEXT], repo_id, rev)
    hops = [provenance_hop(p) for p in revision.provenance]
    return web.json_response({"repo": repo_id, "commit": revision.commit, "provenance": hops})


async def hubd_attestations(request: web.Request) -> web.Response:
    """GET …/revision/{rev}/attestations: custody hops, OMS signatures and SLSA statements.

    What a peer checks before a mirrored revision becomes visible on its side. With
    ``?local=1`` (another node of the same catalog asking) only what this node's store holds.
    """
    ctx = request.app[CONTEXT]
    repo_id, rev = _revision_of(request)
    revision, _ = await asyncio.to_thread(hfapi.revision_of, ctx, repo_id, rev)
    commit = revision.commit
    if request.query.get("local") != "1":  # recorded by another node of the catalog?
        files = {f.path: f.sha256 for f in revision.files}
        await ensure_attestations(ctx, repo_id, commit, files)

    def read() -> dict[str, Any]:
        body = {
            "repo": repo_id,
            "commit": commit,
            "provenance": [provenance_hop(p) for p in revision.provenance],
            "signatures": {
                path.name: json.loads(path.read_bytes())
                for path in stored_signatures(ctx, repo_id, commit)
            },
            "statements": read_chain(chain_path(ctx, repo_id, commit)),
        }
        return Attestations.model_validate(body).model_dump(mode="json")

    return web.json_response(await asyncio.to_thread(read))


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With auth.required, every call but /healthz needs a valid bearer token; the web pages
    check their session cookie themselves (hubd.server.web).

    LFS upload URLs are the exception: clients send them no token, so each is signed by this
    daemon for one object and expires (hubd.server.upload).
    """
    ctx = request.app[CONTEXT]
    signed = request.path.startswith(upload.SIGNED_PREFIX)
    if (
        not ctx.settings.auth_required
        or request.path == "/healthz"
        or signed
        or pages.owns(request)
    ):
        return await handler(request)
    secret = account.bearer(request)
    if secret is None:
        raise AccessDenied(
            "this hubd requires a bearer token", hint="create one with `hubd tokens create`"
        )
    scope = await asyncio.to_thread(token_scope, ctx, secret)
    if scope is None:
        raise AccessDenied("invalid or revoked token")
    request[SCOPE] = scope
    return await handler(request)


async def jobs_list(request: web.Request) -> web.Response:
    """GET /api/hubd/jobs: the newest jobs with their state and progress."""
    jobs = await asyncio.to_thread(list_jobs, request.app[CONTEXT])
    return web.json_response({"jobs": [j.to_json() for j in jobs]})


async def jobs_get(request: web.Request) -> web.Response:
    """GET /api/hubd/jobs/{id}: one job's state, progress and result."""
    try:
        job_id = int(request.match_info["id"])
    except ValueError:
        raise InvalidRequest("job ids are numbers") from None
    job = await asyncio.to_thread(get_job, request.app[CONTEXT], job_id)
    return web.json_response(job.to_json())


async def jobs_submit(request: web.Request) -> web.Response:
    """POST /api/hubd/jobs {"repo": …, "include": […], …}: queue a mirror (write scope).

    The body is a :class:`MirrorRequest`; its ``from`` may only name a configured peer or another
    node of this catalog (:func:`check_source`).
    """
    ctx = request.app[CONTEXT]
    if ctx.settings.auth_required and request.get(SCOPE) != "write":
        raise Forbidden("queueing a mirror needs a token with write scope")
    try:
        body = await request.json(loads=_strict_json)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("the body is not JSON: nested deeper than it can be read") from None
    if not isinstance(body, dict):
        raise InvalidRequest('expected {"repo": "org/name[@revision]", …}')
    mirror_request = MirrorRequest.parse(body)
    await asyncio.to_thread(check_source, ctx, mirror_request.from_)
    job = await asyncio.to_thread(enqueue, ctx, mirror_request)
    return web.json_response(job.to_json(), status=202)


def _strict_json(text: str) -> Any:
    """json.loads without the NaN and Infinity Python accepts: they would be echoed back as
    invalid JSON in every later listing of the job."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: bytes served and mirrored, jobs by state, integrity failures."""
    ctx = request.app[CONTEXT]
    by_state, mirrored, integrity = await asyncio.to_thread(job_metrics, ctx)
    lines = [
        "# TYPE hubd_bytes_served_total counter",
        f"hubd_bytes_served_total {request.app[SERVED]['bytes']}",
        "# TYPE hubd_bytes_mirrored_total counter",
        f"hubd_bytes_mirrored_total {mirrored}",
        "# TYPE hubd_jobs gauge",
        *(f'hubd_jobs{{state="{s}"}} {by_state.get(s, 0)}' for s in JobState),
        "# TYPE hubd_verification_failures_total counter",
        f"hubd_verification_failures_total {integrity}",
    ]
    proxy = request.app.get(hfapi.PROXY)
    if proxy is not None:
        refusals = proxy.resolver.refusals
        lines += [
            "# TYPE hubd_proxy_refusals_total counter",
            *(f'hubd_proxy_refusals_total{{rule="{r}"}} {refusals[r]}' for r in RULES),
            "# TYPE hubd_proxy_transfers_total counter",
            f"hubd_proxy_transfers_total {proxy.flights.started}",
            "# TYPE hubd_proxy_integrity_failures_total counter",
            f"hubd_proxy_integrity_failures_total {proxy.flights.failed}",
            "# TYPE hubd_proxy_recorded_total counter",
            f"hubd_proxy_recorded_total {proxy.recorded}",
        ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8")


def create_app(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[errors, auth], client_max_size=1024 * 1024)
    app[CONTEXT] = ctx
    app[SERVED] = {"bytes": 0}
    app[hfapi.FETCHES] = BlobFetches(ctx)  # blobs only another node holds, fetched once
    app[hfapi.ANSWERS] = Answers(Commits(ctx.catalog))
    if ctx.settings.proxy_enabled and not ctx.settings.offline:
        proxy = PullThrough(ctx)
        app[hfapi.PROXY] = proxy

        async def stop_proxy(_: web.Application) -> None:
            await proxy.close()

        app.on_cleanup.append(stop_proxy)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/hubd/jobs", jobs_list)
    app.router.add_post("/api/hubd/jobs", jobs_submit)
    app.router.add_get("/api/hubd/jobs/{id}", jobs_get)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/hubd/catalog", hubd_catalog)
    app.router.add_get("/api/hubd/blobs/{sha256}", hfapi.blob)
    hubd_rev = "/api/hubd/models/{org}/{name}/revision/{rev}"
    app.router.add_get(hubd_rev + "/manifest", hubd_manifest)
    app.router.add_get(hubd_rev + "/provenance", hubd_provenance)
    app.router.add_get(hubd_rev + "/attestations", hubd_attestations)
    upload.add_routes(app)  # before the catch-all /api/models routes below
    app.router.add_get("/api/models", browse.list_models)
    app.router.add_get("/api/whoami-v2", account.whoami)
    app.router.add_get("/api/models/{org}/{name}/auth-check", account.auth_check)
    app.router.add_get("/api/models/{tail:.+}", hfapi.api_models)
    app.router.add_post("/api/models/{tail:.+}", hfapi.paths_info)
    app.router.add_get("/{org}/{name}/resolve/{tail:.+}", hfapi.resolve)
    pages.setup(app)
    return app
