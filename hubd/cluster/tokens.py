"""API tokens: created once and shown once; the catalog keeps only their sha256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase

from sqlalchemy import select

from ..catalog.models import ApiToken, utcnow
from ..context import Context
from ..errors import InvalidRequest, NotFound

SCOPES = ("read", "write")


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: str
    created_at: datetime
    revoked_at: datetime | None
    repos: list[str] | None = field(default=None)  # globs of the repos it may write; None: any

    def may_write(self, repo_id: str) -> bool:
        """Write scope, and the repo matches one of its globs (when it has any)."""
        if self.scope != "write":
            return False
        return self.repos is None or any(fnmatchcase(repo_id, glob) for glob in self.repos)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _info(token: ApiToken) -> TokenInfo:
    return TokenInfo(
        token.id, token.name, token.scope, token.created_at, token.revoked_at, token.repos
    )


def create_token(
    ctx: Context, scope: str, name: str = "", repos: list[str] | None = None
) -> tuple[TokenInfo, str]:
    """A new token and its secret (the only time the secret exists outside the caller).

    ``repos``: globs (``acme/*``) of the repos a write token may push to; None for any.
    """
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    if repos is not None and (not repos or not all(r.strip() for r in repos)):
        raise InvalidRequest("--repos takes non-empty globs such as 'acme/*'")
    secret = "hubd_" + secrets.token_urlsafe(32)
    with ctx.catalog.begin() as session:
        token = ApiToken(name=name, scope=scope, token_sha256=_digest(secret), repos=repos)
        session.add(token)
        session.flush()
        return _info(token), secret


def list_tokens(ctx: Context) -> list[TokenInfo]:
    with ctx.catalog() as session:
        return [_info(t) for t in session.scalars(select(ApiToken).order_by(ApiToken.id))]


def revoke_token(ctx: Context, token_id: int) -> TokenInfo:
    with ctx.catalog.begin() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise NotFound(f"no token with id {token_id}", hint="see `hubd tokens ls`")
        token.revoked_at = token.revoked_at or utcnow()
        return _info(token)


def token_scope(ctx: Context, secret: str) -> str | None:
    """The scope of a valid, unrevoked token; None otherwise.

    Lookup is by the secret's sha256: the catalog never sees the secret, and an attacker cannot
    steer the digest's bits, so an ordinary comparison leaks nothing useful.
    """
    with ctx.catalog() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(secret)))
    if token is None or token.revoked_at is not None:
        return None
    return token.scope


def find_token(ctx: Context, secret: str) -> TokenInfo | None:
    """The valid, unrevoked token a secret is (its name and scope, for whoami); None otherwise."""
    with ctx.catalog() as session:
        token = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(secret)))
        return None if token is None or token.revoked_at is not None else _info(token)
