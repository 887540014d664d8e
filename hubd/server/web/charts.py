"""Bar charts as SVG geometry, drawn by a template on the server (no script, no library)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WIDTH, BAR_H, GAP, LABEL_W = 560, 22, 8, 200


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    y: int
    width: float

    @property
    def css(self) -> str:
        """A class per value, so the stylesheet colours license classes and verdicts alike."""
        return "c-" + "".join(ch if ch.isalnum() else "-" for ch in self.label.lower())


@dataclass(frozen=True)
class Chart:
    title: str
    width: int
    height: int
    label_width: int
    bars: list[Bar]


def bars(counts: Mapping[str, int], title: str) -> Chart:
    """One horizontal bar per value, longest for the largest count."""
    top = max(counts.values(), default=0) or 1
    span = WIDTH - LABEL_W - 60
    drawn = [
        Bar(label, count, i * (BAR_H + GAP), span * count / top)
        for i, (label, count) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    ]
    height = max(len(drawn) * (BAR_H + GAP), BAR_H)
    return Chart(title, WIDTH, height, LABEL_W, drawn)
