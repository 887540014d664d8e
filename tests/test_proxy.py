"""The pull-through: a daemon with [proxy] enabled serves repos it never mirrored, verified,
vetted before any byte and recorded, to unmodified clients (the `hf` CLI, huggingface_hub)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import MODEL, Result, hubd_process
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import raw, serving

from hubd.catalog.models import RevisionState
from hubd.catalog.refusals import recent_refusals
from hubd.catalog.revisions import find_revision
from hubd.config import load_settings
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.proxy.resolver import Resolver
from hubd.refs import RepoRef
from hubd.trust.keys import stored_signatures
from hubd.trust.provenance import chain_path

HF = Path(sys.executable).parent / "hf"  # the CLI huggingface_hub installs beside Python
Hubd = Callable[..., Result]
BIG = "acme/big"
BIG_FILE = "weights.bin"


def big_bytes(size: int = 12 * 1024 * 1024) -> bytes:
    return (bytes(range(251)) * (size // 251 + 1))[:size]


@pytest.fixture
def proxy(home: Path, hub: FakeHub) -> Iterator[Callable[..., tuple[Context, str]]]:
    """Start an in-process hubd with the pull-through on (settings overridable); its URL."""
    with ExitStack() as stack:

        def start(**overrides: Any) -> tuple[Context, str]:
            settings = load_settings(endpoint=hub.endpoint, proxy_enabled=True, **overrides)
            ctx = stack.enter_context(Context.open(settings))
            return ctx, stack.enter_context(serving(ctx))

        yield start


def file_gets(hub: FakeHub, repo: str) -> list[str]:
    """The GETs of a repo's file bytes at the fake Hub (its resolve route and its CDN)."""
    return [
        r.path
        for r in hub.requests
        if r.method == "GET" and (f"/{repo}/resolve/" in r.path or r.path.startswith("/cdn/"))
    ]


def wait_for(check: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def state(ctx: Context, repo: str, rev: str | None = None) -> RevisionState | None:
    with ctx.catalog() as session:
        revision = find_revision(session, repo, rev)
        return None if revision is None else revision.state


def blobs(ctx: Context) -> list[Path]:
    return sorted(p for p in ctx.store.blobs_dir.rglob("*") if p.is_file())


def test_snapshot_download_through_a_proxy_that_holds_nothing(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub, tmp_path: Path
) -> None:
    ctx, url = proxy()
    path = Path(snapshot_download(MODEL, endpoint=url, cache_dir=tmp_path / "c"))
    for name, data in tiny_model_files(seed=0).items():
        assert (path / name).read_bytes() == data
    wait_for(lambda: state(ctx, MODEL) == RevisionState.VERIFIED)
    with ctx.catalog() as session:
        revision = find_revision(session, MODEL, "main")
        assert revision is not None
        commit = revision.commit
        assert {f.path for f in revision.files} == set(tiny_model_files(seed=0))
        assert revision.provenance[-1].node == "test-node"
        assert revision.provenance[-1].source_url == f"{hub.endpoint}/{MODEL}"
    assert stored_signatures(ctx, MODEL, commit) and chain_path(ctx, MODEL, commit).exists()
    _, metrics = raw(url, "/metrics")
    assert b"hubd_proxy_recorded_total 1" in metrics
    # Now served from the catalog: a second client moves no byte upstream.
    before = len(file_gets(hub, MODEL))
    again = Path(snapshot_download(MODEL, endpoint=url, cache_dir=tmp_path / "c2"))
    assert (again / "config.json").read_bytes() == tiny_model_files(seed=0)["config.json"]
    assert len(file_gets(hub, MODEL)) == before
    info = HfApi(endpoint=url).model_info(MODEL, files_metadata=True)
    assert info.sha == commit


def test_metadata_of_a_repo_the_proxy_lacks(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub
) -> None:
    ctx, url = proxy()
    api = HfApi(endpoint=url)
    commit = hub_commit(hub)
    assert api.model_info(MODEL).sha == commit
    assert set(api.list_repo_files(MODEL)) == set(tiny_model_files(seed=0))
    refs = api.list_repo_refs(MODEL)
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", commit)]
    (entry,) = api.get_paths_info(MODEL, ["config.json"], revision=commit)
    assert entry.size == len(tiny_model_files(seed=0)["config.json"])
    assert api.model_info(MODEL, revision="v1.0").sha == commit  # a tag, resolved upstream
    assert file_gets(hub, MODEL) == [] and blobs(ctx) == []  # metadata moved no file bytes
    assert state(ctx, MODEL) is None  # nothing recorded before a file is fetched


@pytest.mark.parametrize(
    ("settings", "repo", "rule"),
    [
        ({}, "acme/nc", 'denied by policy rule #1 (class = "non-commercial")'),
        ({"proxy_deny": ("*/*-uncensored*",)}, "acme/x-uncensored", "proxy.deny"),
        ({"proxy_allow": ("acme/tiny-*",)}, "other/model", "proxy.allow"),
        ({}, "acme/signed-model", "trust policy: acme/signed-model needs a signature by audit"),
    ],
)
def test_a_refused_repo_is_a_403_naming_the_rule(
    proxy: Callable[..., tuple[Context, str]],
    hub: FakeHub,
    tmp_path: Path,
    policy: Callable[[str], Path],
    home: Path,
    settings: dict[str, Any],
    repo: str,
    rule: str,
) -> None:
    policy('[[rules]]\nclass = "non-commercial"\naction = "deny"\n')
    (home / "trust").mkdir(parents=True)
    (home / "trust" / "policy.toml").write_text(
        '[[rules]]\nrepo = "*/signed-*"\nsigners = ["audit"]\n'
    )
    hub.add_repo(
        repo, tiny_model_files(seed=3, license="cc-by-nc-4.0" if repo == "acme/nc" else "mit")
    )
    ctx, url = proxy(**settings)
    # huggingface_hub reports a 403 as "cannot locate the files" with the Hub's answer in it
    with pytest.raises(LocalEntryNotFoundError) as refused:
        snapshot_download(repo, endpoint=url, cache_dir=tmp_path / "c")
    assert rule in str(refused.value)
    answer = refused.value.__cause__
    assert isinstance(answer, HfHubHTTPError) and answer.response.status_code == 403
    assert answer.response.headers["X-Error-Code"] == "PolicyViolation"
    with pytest.raises(LocalEntryNotFoundError) as one_file:
        hf_hub_download(repo, "config.json", endpoint=url, cache_dir=tmp_path / "c")
    assert rule in str(one_file.value.__cause__)
    assert file_gets(hub, repo) == [] and blobs(ctx) == []
    kind = next((k for k in ("deny", "allow", "trust") if k in rule), "audit")
    _, metrics = raw(url, "/metrics")
    assert f'hubd_proxy_refusals_total{{rule="{kind}"}} 1'.encode() in metrics
    with ctx.catalog() as session:  # judged once per commit: one refusal recorded
        (recorded,) = recent_refusals(session)
    assert (recorded.repo_id, recorded.commit, recorded.rule) == (repo, hub_commit(hub, repo), kind)
    assert rule in recorded.message and recorded.node == ctx.settings.node_name
    assert hf_hub_download(MODEL, "config.json", endpoint=url, cache_dir=tmp_path / "c")


def test_concurrent_clients_share_one_upstream_transfer(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub, tmp_path: Path
) -> None:
    data = big_bytes()
    hub.add_repo(BIG, {BIG_FILE: data, "config.json": b"{}"})
    hub.throttle = 8 * 1024 * 1024  # bytes/s per response: the transfer takes a while
    part = 4 * 1024 * 1024
    _, url = proxy(part_size=part, parts=3)

    def client(n: int) -> bytes:
        cache = tmp_path / f"c{n}"
        return Path(hf_hub_download(BIG, BIG_FILE, endpoint=url, cache_dir=cache)).read_bytes()

    with ThreadPoolExecutor(5) as pool:
        got = list(pool.map(client, range(5)))
    assert all(g == data for g in got)
    assert len(file_gets(hub, BIG)) == len(data) // part  # the parts of one ranged transfer
    _, metrics = raw(url, "/metrics")
    assert b"hubd_proxy_transfers_total 1" in metrics


def test_a_range_is_answered_from_the_flight(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub
) -> None:
    data = big_bytes(3 * 1024 * 1024)
    hub.add_repo(BIG, {BIG_FILE: data})
    hub.throttle = 4 * 1024 * 1024
    _, url = proxy()
    status, body = raw(url, f"/{BIG}/resolve/main/{BIG_FILE}", {"Range": "bytes=1000-1999"})
    assert status == 206 and body == data[1000:2000]


def test_a_file_over_max_file_size_is_refused(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub
) -> None:
    hub.add_repo(BIG, {BIG_FILE: big_bytes(2 * 1024 * 1024), "config.json": b"{}"})
    ctx, url = proxy(proxy_max_file_size=1024 * 1024)
    status, body = raw(url, f"/{BIG}/resolve/main/{BIG_FILE}")
    assert status == 403 and b"proxy.max_file_size" in body
    with ctx.catalog() as session:
        assert [r.rule for r in recent_refusals(session)] == ["size"]
    assert raw(url, f"/{BIG}/resolve/main/config.json") == (200, b"{}")
    assert file_gets(hub, BIG) == [f"/{BIG}/resolve/{hub_commit(hub, BIG)}/config.json"]


def test_wrong_bytes_upstream_fail_every_client_and_leave_nothing(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub, tmp_path: Path
) -> None:
    data = big_bytes(4 * 1024 * 1024)
    hub.add_repo(BIG, {BIG_FILE: data, "config.json": b"{}"})
    hub.corrupt.add(BIG_FILE)  # one byte flipped in the middle: the sha256 cannot match
    hub.throttle = 8 * 1024 * 1024
    ctx, url = proxy()

    def client(n: int) -> str:
        try:
            hf_hub_download(BIG, BIG_FILE, endpoint=url, cache_dir=tmp_path / f"c{n}")
        except Exception as exc:  # what the client raises on a cut body varies by version
            return type(exc).__name__
        return "downloaded"

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(client, range(3)))
    assert "downloaded" not in outcomes
    for n in range(3):
        assert not list((tmp_path / f"c{n}").rglob(BIG_FILE)), "a client kept refused bytes"
    assert blobs(ctx) == [] and not list(ctx.store.tmp_dir.glob("*.partial"))
    _, metrics = raw(url, "/metrics")
    assert b"hubd_proxy_integrity_failures_total 0" not in metrics
    hub.corrupt.clear()  # upstream fixed: the next request starts over and succeeds
    got = hf_hub_download(BIG, BIG_FILE, endpoint=url, cache_dir=tmp_path / "later")
    assert Path(got).read_bytes() == data


def test_upstream_429_and_5xx_are_retried_then_passed_on(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub
) -> None:
    _, url = proxy()
    hub.api_errors = [429, 503]  # the first two asks fail; the third (after backoff) answers
    status, body = raw(url, f"/api/models/{MODEL}")
    assert status == 200 and json.loads(body)["sha"] == hub_commit(hub)
    hub.api_errors = [429] * 3  # busy all along: passed on as a 429, as the Hub would
    hub.add_repo("acme/other", tiny_model_files(seed=5))
    status, body = raw(url, "/api/models/acme/other")
    assert status == 429 and json.loads(body)["code"] == "UpstreamBusy"


def test_offline_daemon_answers_from_the_catalog_only(
    proxy: Callable[..., tuple[Context, str]], hub: FakeHub, tmp_path: Path, home: Path
) -> None:
    settings = load_settings(endpoint=hub.endpoint)
    with Context.open(settings) as ctx:
        asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    hub.add_repo("acme/other", tiny_model_files(seed=4))
    _, url = proxy(offline=True)
    hub.requests.clear()
    assert hf_hub_download(MODEL, "config.json", endpoint=url, cache_dir=tmp_path / "c")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("acme/other", "config.json", endpoint=url, cache_dir=tmp_path / "c")
    assert hub.requests == []


def test_refs_are_reused_for_ref_ttl_and_commits_for_good(ctx: Context, hub: FakeHub) -> None:
    now = [0.0]
    configured = replace(ctx, settings=ctx.settings.model_copy(update={"proxy_ref_ttl": 60.0}))
    resolver = Resolver(configured, clock=lambda: now[0])

    def asked() -> int:
        return sum(1 for r in hub.requests if r.path.startswith(f"/api/models/{MODEL}/revision/"))

    first = asyncio.run(resolver.resolve(MODEL, None)).remote.commit
    moved = hub.add_repo(MODEL, tiny_model_files(seed=9))
    now[0] = 59.0
    assert asyncio.run(resolver.resolve(MODEL, "main")).remote.commit == first
    assert asked() == 1
    now[0] = 61.0
    assert asyncio.run(resolver.resolve(MODEL, "main")).remote.commit == moved
    assert asked() == 2
    assert asyncio.run(resolver.resolve(MODEL, first)).remote.commit == first  # kept: immutable
    assert asked() == 2


def test_a_partly_fetched_revision_is_pending_until_mirrored(
    proxy: Callable[..., tuple[Context, str]],
    hub: FakeHub,
    hubd: Hubd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, url = proxy()
    hf_hub_download(MODEL, "config.json", endpoint=url, cache_dir=tmp_path / "c")
    wait_for(lambda: state(ctx, MODEL, hub_commit(hub)) == RevisionState.PENDING)
    pending = hubd("ls", "--pending", "--json").json()["repos"]
    assert [r["repo"] for r in pending] == [MODEL]
    assert hubd("ls", "--json").json()["repos"] == []
    assert json.loads(raw(url, "/api/models")[1]) == []  # listed once verified, not before
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    assert hubd("ls", "--pending", "--json").json()["repos"] == []
    assert [r["repo"] for r in hubd("ls", "--json").json()["repos"]] == [MODEL]


def hub_commit(hub: FakeHub, repo: str = MODEL) -> str:
    info = json.loads(raw(hub.endpoint, f"/api/models/{repo}")[1])
    return str(info["sha"])


@pytest.fixture
def daemon(home: Path, hub: FakeHub) -> Iterator[Callable[[], tuple[subprocess.Popen[str], str]]]:
    """Start `hubd daemon` processes configured as the issue shows; all stopped at the end."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "hubd.toml").write_text(
        f'endpoint = "{hub.endpoint}"\n\n[proxy]\nenabled = true\nupstreams = ["peers", "hub"]\n'
        'allow = ["*"]\ndeny = []\nref_ttl = "10m"\n'
    )
    procs: list[subprocess.Popen[str]] = []

    def start() -> tuple[subprocess.Popen[str], str]:
        url_file = home / f"url-{len(procs)}"
        proc = hubd_process("daemon", "--port", "0", "--url-file", str(url_file))
        procs.append(proc)
        wait_for(lambda: url_file.exists() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        return proc, url_file.read_text()

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.communicate(timeout=20)


def test_hf_download_through_a_proxy_daemon(
    daemon: Callable[[], tuple[subprocess.Popen[str], str]], tmp_path: Path, hubd: Hubd
) -> None:
    """A real `hubd daemon` with hubd.toml's [proxy], an unmodified `hf download`."""
    _, url = daemon()
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [str(HF), "download", MODEL, "--local-dir", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name, data in tiny_model_files(seed=0).items():
        assert (tmp_path / "out" / name).read_bytes() == data
    wait_for(lambda: [r["repo"] for r in hubd("ls", "--json").json()["repos"]] == [MODEL])


def test_kill_9_mid_transfer_then_the_retry_completes(
    daemon: Callable[[], tuple[subprocess.Popen[str], str]], hub: FakeHub, tmp_path: Path
) -> None:
    data = big_bytes(6 * 1024 * 1024)
    hub.add_repo(BIG, {BIG_FILE: data})
    hub.throttle = 2 * 1024 * 1024
    proc, url = daemon()
    address = urlsplit(url)
    conn = http.client.HTTPConnection(address.hostname or "", address.port, timeout=20)
    conn.request("GET", f"/{BIG}/resolve/main/{BIG_FILE}")
    response = conn.getresponse()
    assert response.status == 200 and response.read(1024 * 1024) == data[: 1024 * 1024]
    proc.kill()
    proc.wait(timeout=20)
    conn.close()
    hub.throttle = None
    _, url = daemon()
    got = hf_hub_download(BIG, BIG_FILE, endpoint=url, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == data
    resumed = [r.range for r in hub.requests if r.path.startswith("/cdn/") and r.range]
    assert any(not r.startswith("bytes=0-") for r in resumed), resumed  # from the partial
