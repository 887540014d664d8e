"""The benchmark report: every figure `make bench` measures, its reference and the ratio.

Each benchmark calls :func:`record` for the figures it prints; they gather in
``bench/results.json`` (or ``$HUBD_BENCH_RESULTS``) with facts about the machine. `make bench`
starts a new report (``--reset``) and prints the table at the end (``--table``).

    .venv/bin/python bench/report.py --reset | --table
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RESULTS = Path(os.environ.get("HUBD_BENCH_RESULTS", Path(__file__).with_name("results.json")))


class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: int = Field(ge=1)
    cpu: str
    memory_bytes: int = Field(ge=0)
    python: str
    platform: str


class Figure(BaseModel):
    """One measured figure beside its reference, measured in the same run."""

    model_config = ConfigDict(extra="forbid")

    bench: str  # the script, e.g. "mirror"
    name: str  # what was measured
    value: float
    unit: str
    reference: str  # what it is compared with
    reference_value: float
    ratio: float  # value / reference_value
    target: str  # the target, e.g. "<= 0.9", or "none set"
    met: bool | None  # None where the target is not a bound on the ratio
    measured_at: datetime


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    started_at: datetime
    machine: Machine
    figures: list[Figure]


def machine() -> Machine:
    cpu = platform.processor() or platform.machine()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Machine(
        cpus=os.cpu_count() or 1,
        cpu=cpu,
        memory_bytes=memory,
        python=platform.python_version(),
        platform=platform.platform(),
    )


def _met(ratio: float, target: str) -> bool | None:
    """Whether ``ratio`` meets a target written ``<= 0.9`` or ``>= 0.8``; None for another."""
    bound, _, number = target.partition(" ")
    try:
        limit = float(number)
    except ValueError:
        return None
    return {"<=": ratio <= limit, ">=": ratio >= limit}.get(bound)


def _read() -> Report:
    if RESULTS.exists():
        return Report.model_validate_json(RESULTS.read_text())
    return Report(started_at=datetime.now(UTC), machine=machine(), figures=[])


def record(
    bench: str,
    name: str,
    value: float,
    unit: str,
    reference: str,
    reference_value: float,
    target: str,
) -> None:
    """Add a figure to the report (under a lock: benchmarks may run side by side)."""
    ratio = value / reference_value if reference_value else float("inf")
    figure = Figure(
        bench=bench,
        name=name,
        value=value,
        unit=unit,
        reference=reference,
        reference_value=reference_value,
        ratio=ratio,
        target=target,
        met=_met(ratio, target),
        measured_at=datetime.now(UTC),
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        report = _read()
        report.figures.append(figure)
        temp = RESULTS.with_suffix(".tmp")
        temp.write_text(report.model_dump_json(indent=2) + "\n")
        temp.replace(RESULTS)


def table(report: Report) -> str:
    rows = [("bench", "figure", "value", "reference", "ratio", "target", "")]
    for f in report.figures:
        verdict = {True: "ok", False: "MISSED", None: "-"}[f.met]
        rows.append(
            (
                f.bench,
                f.name,
                f"{f.value:.3g} {f.unit}",
                f"{f.reference} {f.reference_value:.3g} {f.unit}",
                f"{f.ratio:.2f}x",
                f.target,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    m = report.machine
    head = f"{m.cpus} x {m.cpu}, {m.memory_bytes / 2**30:.0f} GiB, Python {m.python}"
    return "\n".join([head, *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--reset", action="store_true", help="start a new report")
    group.add_argument("--table", action="store_true", help="print the report as a table")
    args = parser.parse_args()
    if args.reset:
        RESULTS.unlink(missing_ok=True)
        return
    if not RESULTS.exists():
        sys.exit(f"bench/report.py: no report at {RESULTS}: run `make bench`")
    report = _read()
    print(table(report))
    missed = [f for f in report.figures if f.met is False]
    print(f"{len(report.figures)} figures, {len(missed)} missed their target")


if __name__ == "__main__":
    main()
