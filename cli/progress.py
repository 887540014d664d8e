"""tqdm bars for transfer events: one overall bar, one per file in flight."""

from __future__ import annotations

import sys
from typing import Any, Never

from tqdm import tqdm


class DaemonBar:
    """One bar for a daemon job, fed from its polled bytes_done/bytes_total."""

    def __init__(self) -> None:
        self._bar: tqdm[Never] | None = None

    def update(self, job: dict[str, Any]) -> None:
        if not job.get("bytes_total"):
            return
        if self._bar is None:
            self._bar = tqdm(
                total=job["bytes_total"],
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
                desc=f"job {job['id']}",
                leave=False,
            )
        self._bar.update(job["bytes_done"] - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class BarProgress:
    """Draws to stderr; the core only emits events (hubd.sources.base.Progress)."""

    def __init__(self) -> None:
        self._total: tqdm[Never] | None = None
        self._bars: dict[str, tqdm[Never]] = {}
        self._free: list[int] = []

    def _bar(self, total: int, desc: str, position: int, initial: int = 0) -> tqdm[Never]:
        return tqdm(
            total=total,
            desc=desc,
            position=position,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            dynamic_ncols=True,
            leave=False,
        )

    def begin(self, files: int, total_bytes: int) -> None:
        self._total = self._bar(total=total_bytes, desc=f"{files} file(s)", position=0)

    def file_started(self, path: str, size: int, offset: int) -> None:
        self.file_done(path)  # a retry from another source restarts the file's bar
        position = self._free.pop() if self._free else len(self._bars) + 1
        self._bars[path] = self._bar(total=size, initial=offset, desc=path[-40:], position=position)
        if self._total is not None:
            self._total.update(offset)

    def advance(self, path: str, nbytes: int) -> None:
        if path in self._bars:
            self._bars[path].update(nbytes)
        if self._total is not None:
            self._total.update(nbytes)

    def file_done(self, path: str) -> None:
        bar = self._bars.pop(path, None)
        if bar is not None:
            self._free.append(bar.pos)
            bar.close()

    def end(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._total is not None:
            self._total.close()
            self._total = None
