"""A revision's lineage as a layered graph for an SVG drawn on the server: its bases above
(their bases above them), the repos built on it below, and on every edge the relation and the
license that flows down it, which is the upper node's effective license.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...audit.inheritance import Ancestor, Effective
from .index import Child

WIDTH = 760
BOX_W, BOX_H, ROW_H = 230, 46, 96
MAX_PER_ROW = 3
MAX_CHILDREN = 9


@dataclass(frozen=True)
class Node:
    repo: str
    license: str  # SPDX id
    license_class: str
    x: float
    y: float
    current: bool = False
    in_catalog: bool = True

    @property
    def label(self) -> str:
        return self.repo if len(self.repo) <= 32 else self.repo[:31] + "…"


@dataclass(frozen=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float
    relation: str
    license: str

    @property
    def mid(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]
    hidden: int  # repos built on this one that are not drawn


def _row(items: Sequence[str], y: float) -> dict[str, tuple[float, float]]:
    """Centres of ``items`` spread over one row (MAX_PER_ROW per line, wrapping)."""
    places = {}
    for i, item in enumerate(items):
        line, column = divmod(i, MAX_PER_ROW)
        count = min(MAX_PER_ROW, len(items) - line * MAX_PER_ROW)
        step = WIDTH / count
        places[item] = (step * column + step / 2, y + line * (BOX_H + 14))
    return places


def graph(repo: str, effective: Effective, children: Sequence[Child]) -> Graph:
    """Rows from the farthest base down to ``repo``, then the first MAX_CHILDREN built on it;
    a repo reached twice (a diamond of merges) is drawn once, and so is each edge."""
    depth = {repo: 0}
    ancestors: dict[str, Ancestor] = {}
    for a in effective.ancestors:  # parents come before their own ancestors
        if a.repo not in depth:
            depth[a.repo] = depth.get(a.via, 0) + 1
            ancestors[a.repo] = a
    top = max(depth.values())
    shown = list(children[:MAX_CHILDREN])
    rows: list[list[str]] = [
        [r for r, d in depth.items() if d == level] for level in range(top, -1, -1)
    ]
    if shown:
        rows.append([c.repo for c in shown])
    places: dict[str, tuple[float, float]] = {}
    y = 16 + BOX_H / 2
    for items in rows:
        row = _row(items, y)
        for name, place in row.items():
            places.setdefault(name, place)  # a repo that is both base and child: drawn once
        lines = (len(items) + MAX_PER_ROW - 1) // MAX_PER_ROW
        y += ROW_H + (lines - 1) * (BOX_H + 14)
    lic = effective.license
    nodes = [Node(repo, lic.spdx, str(lic.license_class), *places[repo], current=True)]
    nodes += [
        Node(
            a.repo,
            a.license.spdx,
            str(a.license.license_class),
            *places[a.repo],
            in_catalog=a.commit is not None,
        )
        for a in ancestors.values()
    ]
    nodes += [
        Node(c.repo, c.spdx, c.license_class, *places[c.repo]) for c in shown if c.repo not in depth
    ]
    edges = []
    for a in {(a.repo, a.via): a for a in effective.ancestors}.values():
        (bx, by), (vx, vy) = places[a.repo], places[a.via]
        edges.append(Edge(bx, by + BOX_H / 2, vx, vy - BOX_H / 2, a.relation, a.license.spdx))
    sx, sy = places[repo]
    for c in shown:
        cx, cy = places[c.repo]
        edges.append(Edge(sx, sy + BOX_H / 2, cx, cy - BOX_H / 2, c.relation, lic.spdx))
    height = int(y - ROW_H + BOX_H / 2 + 16)
    return Graph(WIDTH, max(height, BOX_H + 32), nodes, edges, len(children) - len(shown))
