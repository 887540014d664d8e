"""The nodes sharing a catalog and which blobs each one's store holds: where to fetch from.

Plain functions over a catalog Session; callers own the transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import ColumnElement

from ..errors import StoreError
from .db import insert_new
from .models import BlobLocation, FleetSecret, Node, utcnow


def ensure_node(session: Session, name: str) -> Node:
    """The nodes row of ``name``, created (without a URL) on its first record."""
    node = session.scalar(select(Node).where(Node.name == name))
    if node is None:
        node = Node(name=name)
        session.add(node)
        session.flush()
    return node


def register_node(session: Session, name: str, url: str) -> None:
    """A daemon announces where its Hub API answers (`hubd daemon` at start)."""
    node = ensure_node(session, name)
    node.url = url
    node.last_seen = utcnow()
    session.flush()


def record_locations(session: Session, node: str, digests: Collection[str]) -> None:
    """``node``'s store holds these blobs (recorded in ``blobs`` already)."""
    ensure_node(session, node)
    held = set(
        session.scalars(
            select(BlobLocation.sha256).where(
                BlobLocation.node == node, BlobLocation.sha256.in_(digests)
            )
        )
    )
    session.add_all(BlobLocation(sha256=d, node=node) for d in sorted(set(digests) - held))
    session.flush()


def node_blobs(session: Session, node: str) -> list[str]:
    """The blobs the catalog says ``node``'s store holds."""
    return list(session.scalars(select(BlobLocation.sha256).where(BlobLocation.node == node)))


def held_only_elsewhere(session: Session, node: str, digests: Collection[str]) -> set[str]:
    """Those of ``digests`` the catalog places on other nodes' stores and not on ``node``'s."""
    rows = session.execute(
        select(BlobLocation.sha256, BlobLocation.node).where(BlobLocation.sha256.in_(digests))
    )
    where: dict[str, set[str]] = {}
    for sha256, holder in rows:
        where.setdefault(sha256, set()).add(holder)
    return {sha256 for sha256, nodes in where.items() if node not in nodes}


def forget_locations(session: Session, node: str, digests: Collection[str]) -> None:
    """``node``'s store no longer holds these blobs (gc deleted them, or they were lost)."""
    if digests:
        session.execute(
            delete(BlobLocation).where(BlobLocation.node == node, BlobLocation.sha256.in_(digests))
        )


# A daemon refreshes its nodes row every minute; one silent for longer than this is not asked.
NODE_ALIVE = timedelta(minutes=5)


def _alive(exclude: str) -> ColumnElement[bool]:
    """The other nodes with a URL whose daemon was heard from lately."""
    return and_(
        Node.name != exclude,
        Node.url.is_not(None),
        Node.last_seen >= datetime.now(UTC) - NODE_ALIVE,
    )


def touch_node(session: Session, name: str) -> None:
    """This daemon is still there (its heartbeat)."""
    session.execute(update(Node).where(Node.name == name).values(last_seen=utcnow()))


def holders(session: Session, sha256: str, exclude: str) -> list[tuple[str, str]]:
    """(name, url) of the other live nodes that hold a blob, the most recently seen first."""
    return [
        (name, url)
        for name, url in session.execute(
            select(Node.name, Node.url)
            .join(BlobLocation, BlobLocation.node == Node.name)
            .where(BlobLocation.sha256 == sha256, _alive(exclude))
            .order_by(Node.last_seen.desc(), Node.name)
        )
        if url is not None
    ]


def sibling_nodes(session: Session, exclude: str) -> list[tuple[str, str]]:
    """(name, url) of the other live nodes sharing this catalog, by name."""
    return [
        (name, url)
        for name, url in session.execute(
            select(Node.name, Node.url).where(_alive(exclude)).order_by(Node.name)
        )
        if url is not None
    ]


def list_nodes(session: Session) -> list[Node]:
    """Every node of the catalog, the most recently seen first (the operations page)."""
    return list(session.scalars(select(Node).order_by(Node.last_seen.desc(), Node.name)))


def fleet_secret(catalog: sessionmaker[Session], name: str) -> bytes:
    """The fleet's key for ``name``: drawn by the first daemon that asks, read by the others
    (two drawing at once: the first insert wins, both read it back). Blocking."""
    with catalog.begin() as session:
        found = session.get(FleetSecret, name)
        if found is None:
            drawn = {"name": name, "value": secrets.token_hex(32), "created_at": utcnow()}
            insert_new(session, FleetSecret, [drawn])
    with catalog() as session:
        value = session.scalar(select(FleetSecret.value).where(FleetSecret.name == name))
    if value is None:
        raise StoreError(f"catalog: the fleet secret {name!r} could not be recorded")
    return bytes.fromhex(value)
