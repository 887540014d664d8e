"""Adaptive parallelism: the streams of a transfer grow while the rate grows, shrink when it
stops or the upstream says 429, and the bytes they hold stay within one budget."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest
from support.fakehub import FakeHub

from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.sources import parallelism
from hubd.sources.parallelism import Parallelism

MiB = 1024 * 1024
BIG = "acme/wide"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def interval(window: Parallelism, clock: Clock, rate: float) -> None:
    """One measured interval in which bytes arrived at ``rate`` bytes/s."""
    window.feed(0)
    clock.now += parallelism.INTERVAL
    window.feed(int(rate * parallelism.INTERVAL))


def test_the_window_doubles_while_the_rate_grows_and_settles_on_the_best() -> None:
    clock = Clock()
    window = Parallelism(32, 8 * MiB, clock=clock)
    assert window.window == 8
    for rate in (128e6, 250e6):  # each doubling nearly doubles the rate: a capped link
        interval(window, clock, rate)
    assert window.window == 32 and not window.settled
    interval(window, clock, 260e6)  # 32 streams bought nothing over 16: back to 16, for good
    assert window.window == 16 and window.settled
    interval(window, clock, 900e6)
    assert window.window == 16


def test_a_fast_link_keeps_the_first_window() -> None:
    clock = Clock()
    window = Parallelism(32, 8 * MiB, clock=clock)
    interval(window, clock, 1e9)
    interval(window, clock, 1.05e9)  # loopback: sixteen streams no faster than eight
    assert window.window == 8 and window.settled


def test_busy_halves_the_window_and_it_grows_no_more() -> None:
    clock = Clock()
    window = Parallelism(32, 8 * MiB, clock=clock)
    interval(window, clock, 128e6)
    assert window.window == 16
    window.busy()
    assert window.window == 8 and window.settled
    for _ in range(3):
        window.busy()
    assert window.window == 1
    interval(window, clock, 1e9)
    assert window.window == 1


def test_parts_shrink_as_streams_grow_and_the_budget_holds() -> None:
    window = Parallelism(32, 8 * MiB, budget=48 * MiB)
    sizes = []
    for streams in (4, 8, 16, 32):
        window.window = streams
        sizes.append(window.part_bytes())
    assert sizes == [8 * MiB, 6 * MiB, 3 * MiB, MiB + MiB // 2]

    async def fill() -> tuple[int, int]:
        window.window = 32
        for _ in range(32):
            await asyncio.wait_for(window.acquire(window.part_bytes()), 1)
        blocked = asyncio.create_task(window.acquire(window.part_bytes()))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the window is full
        window.release(window.part_bytes())
        await asyncio.wait_for(blocked, 1)
        return window.streams, window.buffered

    streams, buffered = asyncio.run(fill())
    assert streams == 32 and buffered <= window.budget


def test_one_part_larger_than_the_budget_still_goes_when_nothing_is_in_flight() -> None:
    window = Parallelism(4, 64 * MiB, budget=8 * MiB)

    async def lone() -> int:
        await asyncio.wait_for(window.acquire(64 * MiB), 1)
        return window.streams

    assert asyncio.run(lone()) == 1


@pytest.fixture
def wide(hub: FakeHub, tmp_path: Path) -> bytes:
    """A 16 MiB LFS file on a CDN that sends every response at 2 MiB/s."""
    data = os.urandom(16 * MiB)
    shard = tmp_path / "wide.safetensors"
    shard.write_bytes(data)
    hub.add_repo(BIG, {"README.md": b"# wide\n", "wide.safetensors": shard})
    hub.throttle = 2 * MiB
    return data


def run(ctx: Context, **settings: object) -> Path:
    tuned = replace(ctx, settings=ctx.settings.model_copy(update={"part_size": MiB, **settings}))
    return Path(asyncio.run(mirror(tuned, RepoRef.parse(BIG))).snapshot)


def test_a_capped_link_gets_more_streams_than_it_starts_with(
    ctx: Context, hub: FakeHub, wide: bytes
) -> None:
    snapshot = run(ctx)
    got = (snapshot / "wide.safetensors").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(wide).digest()
    assert parallelism.INITIAL < hub.cdn_peak <= 32


def test_an_upstream_answering_429_gets_fewer_streams_and_every_byte(
    ctx: Context, hub: FakeHub, wide: bytes
) -> None:
    hub.cdn_busy_above = 6
    snapshot = run(ctx, retries=8)
    assert (snapshot / "wide.safetensors").read_bytes() == wide
    assert hub.cdn_peak <= 6
    assert 1 <= hub.cdn_refused <= 8  # each 429 halved the window: it stopped asking for more


def test_a_settled_window_probes_again_later() -> None:
    clock = Clock()
    window = Parallelism(32, 8 * MiB, clock=clock)
    window.busy()
    assert window.window == 4 and window.settled
    clock.now += parallelism.REPROBE
    interval(window, clock, 32e6)  # the link has room again: grown from where it was
    assert not window.settled and window.window == 8
