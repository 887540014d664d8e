"""The Hub's per-repo browsing routes and headers, through the real huggingface_hub client.

refs, commits, paths-info (form and JSON), treesize, ``tree?expand=true``, model info's
``author``/``expand[]``, the content ETag on resolve and the error headers clients map.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

import pytest
from conftest import LORA, MODEL
from huggingface_hub import HfApi, HfFileSystem
from huggingface_hub.errors import RevisionNotFoundError
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import serving

from hubd.cluster.tokens import create_token
from hubd.context import Context
from hubd.errors import UpstreamError
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.server import hfapi
from hubd.sources.modelinfo import parse_refs


@pytest.fixture
def two_commits(ctx: Context, hub: FakeHub) -> Iterator[tuple[str, str, str]]:
    """MODEL mirrored at v1.0, then main moved on (config.json changed) and mirrored again."""
    asyncio.run(mirror(ctx, RepoRef.parse(f"{MODEL}@v1.0")))
    first = asyncio.run(mirror(ctx, RepoRef.parse(MODEL))).commit
    files = {**tiny_model_files(seed=0), "config.json": b'{"model_type": "llama", "v": 2}'}
    second = hub.add_repo(MODEL, files)
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    asyncio.run(mirror(ctx, RepoRef.parse(LORA)))
    with serving(ctx) as url:
        yield url, first, second


def request(
    url: str,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()  # an open keep-alive connection would hold up the server's shutdown


def test_list_repo_refs(two_commits: tuple[str, str, str]) -> None:
    url, first, second = two_commits
    refs = HfApi(endpoint=url).list_repo_refs(MODEL)
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [
        ("main", "refs/heads/main", second)
    ]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [
        ("v1.0", "refs/tags/v1.0", first)
    ]
    assert refs.converts == []
    assert HfApi(endpoint=url).list_repo_refs(MODEL, include_pull_requests=True).pull_requests == []


def test_list_repo_commits_newest_first_and_paginated(
    two_commits: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, first, second = two_commits
    api = HfApi(endpoint=url)
    commits = api.list_repo_commits(MODEL)
    assert [c.commit_id for c in commits] == [second, first]
    assert commits[0].created_at >= commits[1].created_at
    assert [c.commit_id for c in api.list_repo_commits(MODEL, revision="v1.0")] == [first]
    monkeypatch.setattr(hfapi, "COMMITS_PAGE", 1)
    assert [c.commit_id for c in api.list_repo_commits(MODEL)] == [second, first]
    status, headers, _ = request(url, "GET", f"/api/models/{MODEL}/commits/main")
    assert status == 200 and headers["X-Total-Count"] == "2" and 'rel="next"' in headers["Link"]
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_commits(MODEL, revision="nope")


def test_list_repo_commits_follows_the_ref(
    two_commits: tuple[str, str, str], ctx: Context, hub: FakeHub
) -> None:
    """A branch mirrored between two mirrors of main is in its own history, not in main's."""
    url, first, second = two_commits
    dev = hub.add_repo(MODEL, {**tiny_model_files(seed=0), "dev.txt": b"dev"}, branch="dev")
    asyncio.run(mirror(ctx, RepoRef.parse(f"{MODEL}@dev")))
    third = hub.add_repo(MODEL, {**tiny_model_files(seed=0), "third.txt": b"3"})
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    api = HfApi(endpoint=url)
    assert [c.commit_id for c in api.list_repo_commits(MODEL)] == [third, second, first]
    assert [c.commit_id for c in api.list_repo_commits(MODEL, revision="dev")] == [dev]
    everything = [c.commit_id for c in api.list_repo_commits(MODEL, revision=third)]
    assert everything == [third, dev, second, first]  # a commit asked for: no ref to follow


def test_get_paths_info_form_and_json(two_commits: tuple[str, str, str]) -> None:
    url, first, second = two_commits
    api = HfApi(endpoint=url)
    infos = api.get_paths_info(MODEL, ["config.json", "model-00001-of-00002.safetensors", "no"])
    assert [i.path for i in infos] == ["config.json", "model-00001-of-00002.safetensors"]
    expanded = api.get_paths_info(MODEL, ["config.json", "README.md"], expand=True)
    last = {i.path: i.last_commit for i in expanded}
    assert last["config.json"] is not None and last["config.json"].oid == second
    assert last["README.md"] is not None and last["README.md"].oid == first  # unchanged since
    body = json.dumps({"paths": ["config.json"], "expand": True}).encode()
    status, _, answer = request(
        url,
        "POST",
        f"/api/models/{MODEL}/paths-info/v1.0",
        {"Content-Type": "application/json"},
        body,
    )
    assert status == 200
    [entry] = json.loads(answer)
    assert entry["path"] == "config.json" and entry["lastCommit"]["id"] == first


@pytest.mark.parametrize(
    "body",
    [
        {"paths": ["../etc/passwd"]},
        {"paths": ["a"] * (hfapi.MAX_PATHS + 1)},
        {"paths": "config.json", "extra": 1},
        {"paths": [1]},
    ],
)
def test_paths_info_refuses_bad_bodies(two_commits: tuple[str, str, str], body: object) -> None:
    url = two_commits[0]
    status, headers, _ = request(
        url,
        "POST",
        f"/api/models/{MODEL}/paths-info/main",
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    assert status == 400 and headers["X-Error-Message"]


def test_paths_info_reads_the_whole_body_and_no_more(two_commits: tuple[str, str, str]) -> None:
    url = two_commits[0]
    parts = urlsplit(url)
    path = f"/api/models/{MODEL}/paths-info/main"
    body = json.dumps({"paths": ["config.json", "README.md"]}).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=10) as sock:
        sock.sendall(head + body[:10])
        time.sleep(0.3)  # the rest arrives later: the server must wait for it
        sock.sendall(body[10:])
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    huge = json.dumps({"paths": ["config.json"], "pad": "x" * hfapi.MAX_BODY}).encode()
    json_type = {"Content-Type": "application/json"}
    status, headers, _ = request(url, "POST", path, json_type, huge)
    assert status == 400 and "at most" in headers["X-Error-Message"]


def test_paths_info_directories_and_form_body(two_commits: tuple[str, str, str]) -> None:
    url = two_commits[0]
    form = urlencode([("paths", "config.json"), ("paths", "config.json"), ("expand", "false")])
    status, _, answer = request(
        url,
        "POST",
        f"/api/models/{MODEL}/paths-info/main",
        {"Content-Type": "application/x-www-form-urlencoded"},
        form.encode(),
    )
    assert status == 200
    assert [(e["path"], "lastCommit" in e) for e in json.loads(answer)] == [("config.json", False)]


def test_hf_filesystem_info_and_modified(two_commits: tuple[str, str, str]) -> None:
    url, _, second = two_commits
    fs = HfFileSystem(endpoint=url)
    info = fs.info(f"{MODEL}/config.json", expand_info=True)
    assert info["last_commit"].oid == second
    assert fs.modified(f"{MODEL}/config.json") == info["last_commit"].date


def test_treesize(two_commits: tuple[str, str, str]) -> None:
    url = two_commits[0]
    total = (
        sum(len(v) for v in tiny_model_files(seed=0).values())
        - len(tiny_model_files(seed=0)["config.json"])
        + len(b'{"model_type": "llama", "v": 2}')
    )
    status, _, body = request(url, "GET", f"/api/models/{MODEL}/treesize/main")
    assert status == 200 and json.loads(body) == {"path": "/", "size": total}
    status, _, body = request(url, "GET", f"/api/models/{MODEL}/treesize/main/config.json")
    assert json.loads(body)["size"] == len(b'{"model_type": "llama", "v": 2}')
    status, headers, _ = request(url, "GET", f"/api/models/{MODEL}/treesize/main/nothing")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"


def test_tree_expand_adds_last_commit(
    two_commits: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, first, second = two_commits
    monkeypatch.setattr(hfapi, "PAGE", 2)  # each page gets its own lastCommits
    entries = list(HfApi(endpoint=url).list_repo_tree(MODEL, expand=True))
    last = {e.path: e.last_commit for e in entries}
    assert last["config.json"] is not None and last["config.json"].oid == second
    assert last["README.md"] is not None and last["README.md"].oid == first
    plain = list(HfApi(endpoint=url).list_repo_tree(MODEL))
    assert all(e.last_commit is None for e in plain)


def test_model_info_fields_and_expand(two_commits: tuple[str, str, str]) -> None:
    url, _, second = two_commits
    api = HfApi(endpoint=url)
    info = api.model_info(MODEL)
    assert info.author == "acme" and info.sha == second
    assert info.created_at is not None and info.last_modified is not None
    assert info.created_at < info.last_modified
    adapter = api.model_info(LORA, expand=["baseModels", "author"])
    assert adapter.author == "acme"
    assert adapter.base_models == {"relation": "adapter", "models": [{"id": MODEL}]}  # type: ignore[comparison-overlap]
    assert adapter.siblings is None  # only what was asked for
    status, headers, _ = request(url, "GET", f"/api/models/{MODEL}?expand[]=nonsense")
    assert status == 400 and "nonsense" in headers["X-Error-Message"]


def test_model_info_config_from_the_repos_own_files(two_commits: tuple[str, str, str]) -> None:
    """``config`` as the Hub derives it: config.json, tokenizer_config.json, adapter_config.json."""
    api = HfApi(endpoint=two_commits[0])
    tokens = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    assert api.model_info(MODEL, revision="v1.0").config == {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "tokenizer_config": tokens,
    }
    # main's config.json is {"model_type": "llama", "v": 2}: only what the Hub lifts from it
    assert api.model_info(MODEL).config == {"model_type": "llama", "tokenizer_config": tokens}
    assert api.model_info(LORA, expand=["config"]).config == {
        "tokenizer_config": {},
        "peft": {"base_model_name_or_path": MODEL, "task_type": "CAUSAL_LM"},
    }
    assert api.model_info(MODEL, expand=["author"]).config is None  # only what was asked for


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_resolve_etag_is_the_content_etag(
    two_commits: tuple[str, str, str], ctx: Context, method: str
) -> None:
    url = two_commits[0]
    with ctx.catalog() as session:
        from hubd.catalog.revisions import find_revision

        revision = find_revision(session, MODEL, "main")
        assert revision is not None
        files = {f.path: f for f in revision.files}
    for name, f in files.items():
        status, headers, _ = request(url, method, f"/{MODEL}/resolve/main/{name}")
        expected = f'"{f.sha256}"' if f.lfs else f'"{f.git_oid}"'
        assert status == 200 and headers["ETag"] == expected == headers["X-Linked-Etag"]
        assert not [h for h in headers if h.lower().startswith("x-xet")]


def test_errors_carry_the_hub_headers_on_head_too(
    two_commits: tuple[str, str, str], ctx: Context
) -> None:
    url = two_commits[0]
    for method in ("GET", "HEAD"):
        status, headers, _ = request(url, method, f"/{MODEL}/resolve/main/missing.json")
        assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
        assert headers["X-Error-Message"]
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    _, secret = create_token(guarded, "read", "reader")
    with serving(guarded) as locked:
        status, headers, _ = request(locked, "HEAD", f"/{MODEL}/resolve/main/config.json")
        assert status == 401 and "bearer token" in headers["X-Error-Message"]
        assert headers["X-Error-Code"] == "RepoNotFound"
        assert HfApi(endpoint=locked).repo_exists(MODEL, token=False) is False
        assert HfApi(endpoint=locked).repo_exists(MODEL, token=secret) is True
        assert HfApi(endpoint=locked).repo_exists("acme/none", token=secret) is False
        status, headers, _ = request(locked, "GET", "/api/hubd/jobs")
        assert status == 401 and headers["X-Error-Code"] == "AccessDenied"  # not a repo route


def test_refs_are_listed_as_their_source_said(ctx: Context, hub: FakeHub) -> None:
    """A version-like branch and a plain-named tag: a guess by name gets both wrong."""
    branch_commit = hub.add_repo("acme/kinds", {"a.txt": b"1"}, branch="v2.0")
    tag_commit = hub.add_repo("acme/kinds", {"a.txt": b"2"}, tags=["stable"])
    for name in ("v2.0", "stable", "main"):
        asyncio.run(mirror(ctx, RepoRef.parse(f"acme/kinds@{name}")))
    with serving(ctx) as url:
        refs = HfApi(endpoint=url).list_repo_refs("acme/kinds")
    assert sorted((b.name, b.ref, b.target_commit) for b in refs.branches) == [
        ("main", "refs/heads/main", tag_commit),
        ("v2.0", "refs/heads/v2.0", branch_commit),
    ]
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [
        ("stable", "refs/tags/stable", tag_commit)
    ]


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"branches": [{"name": "x", "targetCommit": "nope"}], "tags": []}', b"{"],
)
def test_a_malformed_refs_answer_is_named(body: bytes) -> None:
    with pytest.raises(UpstreamError, match=r"hub\.example answered acme/x's refs with"):
        parse_refs(body, "hub.example", "acme/x")


def test_model_info_is_kept_until_the_catalog_moves(
    ctx: Context, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept answer is served while nothing is committed; a mirror moving main is seen next."""
    built: list[str] = []
    info_of = hfapi._info_of

    def counted(*args: object) -> object:
        built.append(str(args[2]))
        return info_of(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hfapi, "_info_of", counted)
    first = asyncio.run(mirror(ctx, RepoRef.parse(MODEL))).commit
    with serving(ctx) as url:
        api = HfApi(endpoint=url)
        assert [api.model_info(MODEL).sha for _ in range(3)] == [first] * 3
        assert api.model_info(MODEL, expand=["author"]).author == "acme"  # its own answer
        assert len(built) == 2
        second = hub.add_repo(MODEL, {**tiny_model_files(seed=0), "new.txt": b"new"})
        asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
        assert api.model_info(MODEL).sha == second
        assert api.model_info(MODEL, revision=first).sha == first
        assert len(built) == 4


def test_model_info_requests_missing_together_share_one_build(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a commit, a crowd asking at once costs one build (the daemon's heartbeat commits)."""
    built: list[str] = []
    info_of = hfapi._info_of

    def slow(*args: object) -> object:
        built.append(str(args[2]))
        time.sleep(0.5)  # every request below arrives while this one builds
        return info_of(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(hfapi, "_info_of", slow)
    commit = asyncio.run(mirror(ctx, RepoRef.parse(MODEL))).commit
    with serving(ctx) as url, ThreadPoolExecutor(max_workers=16) as pool:
        shas = list(pool.map(lambda _: HfApi(endpoint=url).model_info(MODEL).sha, range(16)))
    assert shas == [commit] * 16
    assert len(built) == 1
