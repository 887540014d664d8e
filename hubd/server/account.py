"""Who a caller is and what they may read: `whoami-v2` and `auth-check`, as the Hub answers.

hubd has tokens, not accounts: a token is the user, named by its name, its scope the role.
``hf auth login --token`` asks whoami-v2 and saves the token under ``auth.accessToken
.displayName``; ``hf auth whoami`` prints ``name`` and ``orgs``. Both answer with or without
auth.required (a token is checked either way); auth-check follows the daemon's auth rules.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..catalog.listing import listed
from ..cluster.tokens import find_token
from ..errors import AccessDenied, RepoNotFound
from ..refs import RepoRef
from .hfapi import CONTEXT

INVALID = "Invalid credentials in Authorization header"  # the Hub's words


def bearer(request: web.BaseRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    return (secret.strip() or None) if scheme.lower() == "bearer" else None


async def whoami(request: web.Request) -> web.Response:
    """GET /api/whoami-v2: the token's name and role; 401 without a valid token."""
    secret = bearer(request)
    if secret is None:
        raise AccessDenied(INVALID, hint="pass a hubd token: `hubd tokens create`")
    token = await asyncio.to_thread(find_token, request.app[CONTEXT], secret)
    if token is None:
        raise AccessDenied(INVALID)
    name = token.name or f"token-{token.id}"
    created = token.created_at.isoformat().replace("+00:00", "Z")
    return web.json_response(
        {
            "type": "user",
            "id": str(token.id),
            "name": name,
            "fullname": name,
            "orgs": [],
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": name, "role": token.scope, "createdAt": created},
            },
        }
    )


async def auth_check(request: web.Request) -> web.Response:
    """GET /api/models/{org}/{name}/auth-check: 200 when the caller may read the repo.

    The auth middleware has already refused a missing or invalid token where one is required;
    what is left is whether the repo is there to read (a verified revision).
    """
    repo_id = RepoRef.parse(f"{request.match_info['org']}/{request.match_info['name']}").repo_id

    def exists() -> bool:
        with request.app[CONTEXT].catalog() as session:
            return listed(session, repo_id)

    if not await asyncio.to_thread(exists):
        raise RepoNotFound(f"Repository {repo_id} not found")
    return web.json_response({})
