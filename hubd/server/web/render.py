"""How a web page leaves: templates, static assets, the JSON twin, security headers.

Jinja2 templates with autoescape, SVG charts and lineage drawn on the server, one stylesheet
and one small script shipped in the package under a content digest (cached for good, never
fetched from anywhere else), and a strict Content-Security-Policy: no inline script, nothing
from another origin. Pages live under ``/ui/``; the auth middleware leaves them to
:func:`page`, which reads a session cookie or a bearer token (:mod:`.session`).
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from ... import __version__
from ...errors import AccessDenied, HubdError
from ..hfapi import CONTEXT
from . import session
from .index import Indexer

PREFIX = "/ui/"
INDEXER = web.AppKey("web_indexer", Indexer)
ROUTES: web.AppKey[set[web.AbstractResource | None]] = web.AppKey("web_routes")
View = Callable[[web.Request], Awaitable["Rendered | web.StreamResponse"]]


@dataclass(frozen=True)
class Rendered:
    """A page's data (its JSON twin) and what only the HTML needs beside it."""

    template: str
    data: dict[str, Any]
    extra: dict[str, Any] | None = None
    status: int = 200


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    digest: str


def _assets() -> dict[str, Asset]:
    found = {}
    for item in resources.files(__package__).joinpath("static").iterdir():
        if item.is_file():
            body = item.read_bytes()
            kind = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            found[item.name] = Asset(body, kind, hashlib.sha256(body).hexdigest()[:16])
    return found


ASSETS = _assets()
templates = Environment(
    loader=PackageLoader(__package__, "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static"] = lambda name: f"{PREFIX}static/{ASSETS[name].digest}/{name}"
templates.globals["version"] = __version__
templates.filters["size"] = lambda n: _size(int(n))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError(n)


def owns(request: web.Request) -> bool:
    """Whether the request matched one of the web pages' routes (they check auth themselves).
    By route, not by path: ``/ui/x/resolve/main/f`` of a repo in an org named "ui" is still the
    Hub API's, behind its bearer check."""
    return request.match_info.route.resource in request.app[ROUTES]


def wants_json(request: web.Request) -> bool:
    return request.query.get("format") == "json"


def render(request: web.Request, rendered: Rendered) -> web.Response:
    if wants_json(request):
        return web.json_response(rendered.data, status=rendered.status)
    scope = request.get(session.SCOPE, "")
    body = templates.get_template(rendered.template).render(
        **rendered.data,
        **(rendered.extra or {}),
        request=request,
        path=request.path,
        scope=scope,
        may_write=session.may_write(scope),
        logged_in=session.SESSION_COOKIE in request.cookies and scope not in ("", "open"),
        auth_required=request.app[CONTEXT].settings.auth_required,
        csrf=session.csrf_token(request),
    )
    response = web.Response(
        text=body, content_type="text/html", charset="utf-8", status=rendered.status
    )
    if session.NEW_CSRF in request:
        session.set_cookie(request, response, session.CSRF_COOKIE, request[session.NEW_CSRF])
    return response


def page(
    view: View, *, public: bool = False
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A view behind the read check: a browser without a session goes to the login form, a
    script gets the API's 401; a HubdError becomes an error page (or its JSON)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        scope = await session.scope_of(request)
        if scope is None and not public:
            if wants_json(request) or "Authorization" in request.headers:
                raise AccessDenied(
                    "this hubd requires a bearer token", hint="create one with `hubd tokens create`"
                )
            raise web.HTTPSeeOther(f"{PREFIX}login")
        request[session.SCOPE] = scope or ""
        try:
            result = await view(request)
            return result if isinstance(result, web.StreamResponse) else render(request, result)
        except HubdError as exc:
            if wants_json(request):
                raise
            data = {"error": exc.message, "code": exc.code, "hint": exc.hint}
            return render(request, Rendered("error.html", data, status=exc.http_status))

    return handler


async def static(request: web.Request) -> web.Response:
    asset = ASSETS.get(request.match_info["name"])
    if asset is None or asset.digest != request.match_info["digest"]:
        raise web.HTTPNotFound()
    return web.Response(
        body=asset.body,
        content_type=asset.content_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if owns(request):
        response.headers["Content-Security-Policy"] = session.CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if response.content_type == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")


async def root(_: web.Request) -> web.Response:
    raise web.HTTPFound(PREFIX)
