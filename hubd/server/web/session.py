"""Browser sessions for the web pages: a login form takes a hubd token once and the browser
holds only a random session id in a cookie (HttpOnly, SameSite=Strict, Secure over TLS).

The token stays in this process's memory, so a revoked token ends its sessions on the next
page. Every form carries a CSRF token, compared with the one in a cookie of its own (double
submit, bound to the session when there is one): a page on another site can neither read nor
send it. Tokens never appear in a URL or a page.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

from ...cluster.tokens import token_scope
from ...errors import Forbidden
from ..account import bearer
from ..hfapi import CONTEXT

SESSION_COOKIE = "hubd_session"
CSRF_COOKIE = "hubd_csrf"
CSRF_FIELD = "csrf"
LIFETIME = 12 * 3600  # seconds a session lasts without a new login
MAX_SESSIONS = 10_000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@dataclass
class Session:
    secret: str  # the token, kept server-side only
    csrf: str
    expires: float


class Sessions:
    """Session id -> session, in memory: a restarted daemon asks everyone to log in again."""

    def __init__(self) -> None:
        self._by_id: dict[str, Session] = {}

    def open(self, secret: str) -> tuple[str, Session]:
        now = time.monotonic()
        self._by_id = {k: s for k, s in self._by_id.items() if s.expires > now}
        if len(self._by_id) >= MAX_SESSIONS:  # the oldest give way
            for key in sorted(self._by_id, key=lambda k: self._by_id[k].expires)[:100]:
                del self._by_id[key]
        sid = secrets.token_urlsafe(32)
        session = Session(secret, secrets.token_urlsafe(32), now + LIFETIME)
        self._by_id[sid] = session
        return sid, session

    def find(self, sid: str | None) -> Session | None:
        session = self._by_id.get(sid) if sid else None
        if session is None or session.expires <= time.monotonic():
            return None
        return session

    def close(self, sid: str | None) -> None:
        if sid:
            self._by_id.pop(sid, None)


SESSIONS = web.AppKey("web_sessions", Sessions)
SCOPE = web.RequestKey("web_scope", str)  # read | write | "open" (no auth) | "" (refused)
NEW_CSRF = web.RequestKey("web_new_csrf", str)  # a CSRF cookie this answer must set


def set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=LIFETIME,
    )


async def scope_of(request: web.Request) -> str | None:
    """The caller's scope: from the session cookie or a bearer token; None if neither holds.

    Without auth.required everyone reads, and writes as the API lets them (anyone may queue).
    """
    ctx = request.app[CONTEXT]
    session = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    secret = bearer(request) or (session.secret if session else None)
    if secret is not None:
        scope = await asyncio.to_thread(token_scope, ctx, secret)
        if scope is not None:
            return scope
        if ctx.settings.auth_required:
            return None
    return None if ctx.settings.auth_required else "open"


def csrf_token(request: web.Request) -> str:
    """The token this page's forms carry: the session's, else the browser's CSRF cookie."""
    session = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        return session.csrf
    if CSRF_COOKIE in request.cookies:
        return request.cookies[CSRF_COOKIE]
    if NEW_CSRF not in request:
        request[NEW_CSRF] = secrets.token_urlsafe(32)
    return request[NEW_CSRF]


def check_csrf(request: web.Request, sent: str | None) -> None:
    """Refuse a form whose CSRF token is not this browser's (a forged cross-site POST)."""
    session = request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    expected = session.csrf if session is not None else request.cookies.get(CSRF_COOKIE)
    if not expected or not sent or not hmac.compare_digest(expected, sent):
        raise Forbidden("the form's CSRF token does not match: reload the page and try again")


def see_other(location: str) -> web.Response:
    """A 303 to answer a form with (returned, so that cookies can be set on it)."""
    return web.Response(status=303, headers={"Location": location})


def may_write(scope: str) -> bool:
    return scope in ("write", "open")


def require_write(scope: str) -> None:
    if not may_write(scope):
        raise Forbidden("this needs a token with write scope: log in with one")
