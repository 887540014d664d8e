"""Logging in and out of the web pages with a hubd token (see :mod:`.session`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from aiohttp import web
from pydantic import StringConstraints, ValidationError

from ...cluster.tokens import token_scope
from ...errors import InvalidRequest
from ...validation import Closed
from ..hfapi import CONTEXT
from . import session
from .render import PREFIX, Rendered


class LoginForm(Closed):
    csrf: Annotated[str, StringConstraints(max_length=100)]
    token: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


async def login_form(request: web.Request) -> Rendered:
    """GET /ui/login: the form (the token goes in the POST body, never in a URL)."""
    return Rendered("login.html", {})


async def login(request: web.Request) -> Rendered | web.StreamResponse:
    """POST /ui/login: a valid token opens a session; the browser keeps only its id."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("expected a form")
    fields = await request.post()
    session.check_csrf(request, str(fields.get(session.CSRF_FIELD, "")) or None)
    try:
        sent = LoginForm.model_validate({k: str(v) for k, v in fields.items()})
    except ValidationError:
        raise InvalidRequest("the form takes a token") from None
    scope = await asyncio.to_thread(token_scope, request.app[CONTEXT], sent.token)
    if scope is None:
        return Rendered("login.html", {"error": "invalid or revoked token"}, status=401)
    sessions = request.app[session.SESSIONS]
    sessions.close(request.cookies.get(session.SESSION_COOKIE))
    sid, _ = sessions.open(sent.token)
    response = session.see_other(PREFIX)
    session.set_cookie(request, response, session.SESSION_COOKIE, sid)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /ui/logout: the session ends here and in the browser."""
    fields = await request.post()
    session.check_csrf(request, str(fields.get(session.CSRF_FIELD, "")) or None)
    request.app[session.SESSIONS].close(request.cookies.get(session.SESSION_COOKIE))
    response = session.see_other(f"{PREFIX}login")
    response.del_cookie(session.SESSION_COOKIE, path="/")
    return response
