"""Peers: other hubd nodes (any Hugging Face endpoint) mirrored from before huggingface.co.

A peer's token is read at use time from the file or environment variable named when it was
added; the catalog never holds the token itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select

from ..catalog.models import Peer
from ..catalog.nodes import sibling_nodes
from ..config import Settings
from ..context import Context
from ..errors import ConfigError, InvalidRequest, NotFound
from .huggingface import HfSource


@dataclass(frozen=True)
class PeerInfo:
    name: str
    url: str
    token_file: str | None
    token_env: str | None
    position: int


def _info(peer: Peer) -> PeerInfo:
    return PeerInfo(peer.name, peer.url, peer.token_file, peer.token_env, peer.position)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise InvalidRequest(f"not a peer URL: {url!r} (expected http(s)://host[:port])")
    return url.rstrip("/")


def add_peer(
    ctx: Context, name: str, url: str, token_file: Path | None = None, token_env: str | None = None
) -> PeerInfo:
    if not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequest(f"peer names are letters, digits, '-' and '_': {name!r}")
    if token_file is not None and token_env is not None:
        raise InvalidRequest("give --token-file or --token-env, not both")
    with ctx.catalog.begin() as session:
        if session.scalar(select(Peer).where(Peer.name == name)) is not None:
            raise InvalidRequest(f"a peer named {name!r} exists; `hubd peers rm {name}` first")
        position = (session.scalar(select(func.max(Peer.position))) or 0) + 1
        peer = Peer(
            name=name,
            url=check_url(url),
            position=position,
            token_file=str(token_file.resolve()) if token_file else None,
            token_env=token_env,
        )
        session.add(peer)
        session.flush()
        return _info(peer)


def list_peers(ctx: Context) -> list[PeerInfo]:
    with ctx.catalog() as session:
        return [_info(p) for p in session.scalars(select(Peer).order_by(Peer.position))]


def remove_peer(ctx: Context, name: str) -> None:
    with ctx.catalog.begin() as session:
        if not session.execute(delete(Peer).where(Peer.name == name)).rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"no peer named {name!r}", hint="see `hubd peers ls`")


def peer_token(peer: PeerInfo) -> str | None:
    if peer.token_env:
        token = os.environ.get(peer.token_env)
        if not token:
            raise ConfigError(f"peer {peer.name}: ${peer.token_env} is not set")
        return token
    if peer.token_file:
        try:
            return Path(peer.token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"peer {peer.name}: cannot read {peer.token_file}: {exc}") from None
    return None


def node_token(settings: Settings) -> str | None:
    """The token this node sends to the other nodes of its catalog (node.token_file)."""
    if settings.node_token_file is None:
        return None
    try:
        return settings.node_token_file.read_text().strip() or None
    except OSError as exc:
        raise ConfigError(
            f"node.token_file: cannot read {settings.node_token_file}: {exc}"
        ) from None


def source_for(settings: Settings, url: str, token: str | bool | None) -> HfSource:
    """An endpoint with this node's transfer settings (timeouts, rates, parts, retries)."""
    return HfSource(
        url,
        token=token,
        timeout=settings.timeout,
        parts=settings.parts,
        part_size=settings.part_size,
        retries=settings.retries,
        min_rate=settings.min_rate,
        grace=settings.grace,
    )


def sources(ctx: Context, from_: str | None = None) -> list[HfSource]:
    """Where to mirror from, in order.

    ``from_`` (a peer name or URL) alone; else the other nodes sharing this catalog (what one of
    them already holds comes from it, not from afar), the configured peers, then the Hub.
    """
    s = ctx.settings

    def source(url: str, token: str | bool | None) -> HfSource:
        return source_for(s, url, token)

    peers = list_peers(ctx)
    if from_ is not None:
        named = next((p for p in peers if p.name == from_), None)
        if named is not None:
            return [source(named.url, peer_token(named) or False)]
        return [source(check_url(from_), False)]  # never send the HF token to an ad-hoc URL
    with ctx.catalog() as session:
        siblings = sibling_nodes(session, exclude=s.node_name)
    configured = {p.url for p in peers}
    token = (node_token(s) or False) if siblings else False
    return (
        [source(url, token) for _, url in siblings if url not in configured]
        + [source(p.url, peer_token(p) or False) for p in peers]
        + [source(s.endpoint, s.token)]
    )
