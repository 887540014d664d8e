"""Per-node stores on one catalog: who holds which blob, and a node fetching what another holds."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alembic import command
from alembic.config import Config
from conftest import LORA, MODEL, Result, hubd_process
from huggingface_hub import snapshot_download
from sqlalchemy import insert, select, update
from support.fakehub import FakeHub
from support.modelgen import tiny_gguf_files, tiny_lora_files, tiny_model_files
from test_server import serving

from hubd.catalog.db import MIGRATIONS, create_catalog_engine, open_catalog
from hubd.catalog.models import BlobLocation, Node
from hubd.catalog.nodes import NODE_ALIVE, holders, touch_node
from hubd.catalog.revisions import (
    CardRecord,
    FileRecord,
    RevisionRecord,
    find_revision,
    record_revision,
)
from hubd.cluster.locations import register
from hubd.cluster.tokens import create_token
from hubd.config import load_settings
from hubd.context import Context
from hubd.errors import ConfigError
from hubd.ops.mirror import mirror
from hubd.ops.verify import verify_store
from hubd.refs import RepoRef
from hubd.runtime.prepare import prepare
from hubd.sources.registry import add_peer, sources
from hubd.trust.keys import node_key, stored_signatures
from hubd.trust.oms import key_hint, public_pem
from hubd.trust.policy import may_use

Hubd = Callable[..., Result]
BIG = "model-00001-of-00002.safetensors"


def node(tmp_path: Path, name: str, catalog_url: str, **settings: Any) -> Context:
    """A node with its own home and store on the shared catalog at ``catalog_url``."""
    environ = {"HUBD_HOME": str(tmp_path / name)}
    return Context.open(
        load_settings(environ, catalog_url=catalog_url, node_name=name, retries=1, **settings)
    )


def locations(ctx: Context) -> dict[str, set[str]]:
    """sha256 -> the nodes the catalog says hold it."""
    held: dict[str, set[str]] = {}
    with ctx.catalog() as session:
        for sha256, name in session.execute(select(BlobLocation.sha256, BlobLocation.node)):
            held.setdefault(sha256, set()).add(name)
    return held


def paths(ctx: Context, repo: str) -> dict[str, str]:
    """path -> sha256 of the repo's main revision in the catalog."""
    with ctx.catalog() as session:
        revision = find_revision(session, repo, None)
        assert revision is not None
        return {f.path: f.sha256 for f in revision.files}


def digests(ctx: Context, repo: str) -> set[str]:
    return set(paths(ctx, repo).values())


def request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one plain HTTP request, errors included."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers or {}), timeout=30
        ) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def served_bytes(url: str) -> int:
    """hubd_bytes_served_total of the daemon at ``url``."""
    text = request(f"{url}/metrics")[2].decode()
    (line,) = [x for x in text.splitlines() if x.startswith("hubd_bytes_served_total ")]
    return int(line.split()[1])


def file_gets(hub: FakeHub, repo: str) -> int:
    return sum(1 for r in hub.requests if r.method == "GET" and r.path.startswith(f"/{repo}/"))


def port(url: str) -> int:
    return urlsplit(url).port or 0


def test_locations_follow_records_and_gc(
    hubd: Hubd, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    assert hubd("mirror", MODEL, "-q").code == 0
    ctx = Context.open(load_settings())
    model = digests(ctx, MODEL)
    assert locations(ctx) == {d: {"test-node"} for d in model}
    with ctx.catalog() as session:  # recorded without a daemon: nobody fetches from it
        assert [(n.name, n.url) for n in session.scalars(select(Node))] == [("test-node", None)]

    with ctx.catalog() as session:
        revision = find_revision(session, MODEL, None)
        assert revision is not None
        files = [FileRecord(f.path, f.size, f.sha256, f.git_oid, f.lfs) for f in revision.files]
    with ctx.catalog.begin() as session:  # another node records the same revision
        record_revision(
            session,
            RevisionRecord(
                repo_id=MODEL,
                commit=revision.commit,
                source_endpoint="http://node-a",
                refs=["main"],
                files=files,
                card=CardRecord(),
                is_adapter=False,
                base_model=None,
                node="node-b",
                client="test",
                fetched_at=datetime.now(UTC),
            ),
        )
    assert locations(ctx) == {d: {"test-node", "node-b"} for d in model}

    lost = sorted(model)[0]  # gone from this store: gc stops naming this node as its holder
    ctx.store.blob_path(lost).unlink()
    assert hubd("gc").code == 0
    assert locations(ctx) == {d: {"test-node", "node-b"} for d in model - {lost}} | {
        lost: {"node-b"}
    }
    assert hubd("rm", MODEL).code == 0 and hubd("gc").code == 0
    assert locations(ctx) == {}  # the blobs left the catalog, and every node's rows with them
    ctx.close()


def test_migration_credits_existing_blobs_to_the_last_hop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = create_catalog_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        now = datetime.now(UTC)
        rows: dict[str, list[dict[str, Any]]] = {
            "repos": [{"id": 1, "repo_id": MODEL, "kind": "model", "created_at": now}],
            "revisions": [
                {
                    "id": 1,
                    "repo_pk": 1,
                    "commit": "1" * 40,
                    "state": "verified",
                    "mirrored_at": now,
                    "source_endpoint": "http://peer",
                    "is_adapter": False,
                }
            ],
            "blobs": [{"sha256": c * 64, "size": 1, "created_at": now} for c in "ab"],
            "files": [
                {"id": i, "revision_pk": 1, "path": c, "size": 1, "sha256": c * 64, "lfs": False}
                for i, c in enumerate("ab", 1)
            ],
            "provenance": [  # a hop of the peer's catalog, then this catalog's node
                {
                    "id": hop + 1,
                    "revision_pk": 1,
                    "hop": hop,
                    "source_url": "http://x",
                    "commit": "1" * 40,
                    "node": name,
                    "fetched_at": now,
                    "client": "hubd",
                }
                for hop, name in enumerate(["peer-node", "here"])
            ],
        }
        for table, values in rows.items():
            connection.execute(insert(Node.metadata.tables[table]), values)
    engine.dispose()
    factory = open_catalog(url)  # migrates to the head
    with factory() as session:
        assert [(n.name, n.url) for n in session.scalars(select(Node))] == [("here", None)]
        held = session.execute(select(BlobLocation.sha256, BlobLocation.node)).all()
    assert sorted(held) == [("a" * 64, "here"), ("b" * 64, "here")]
    factory.kw["bind"].dispose()


def test_node_url_defaults_to_the_listening_address(tmp_path: Path) -> None:
    def url(**environ: str) -> str:
        return load_settings({"HUBD_HOME": str(tmp_path), **environ}).node_url

    assert url() == "http://127.0.0.1:8080"
    assert url(HUBD_HOST="::1") == "http://[::1]:8080"
    tls = {"HUBD_TLS_CERT": "/c.pem", "HUBD_TLS_KEY": "/k.pem"}
    assert url(HUBD_HOST="0.0.0.0", HUBD_PORT="9000", **tls) == (  # noqa: S104 - nothing binds
        f"https://{socket.gethostname()}:9000"
    )
    assert url(HUBD_NODE_URL="http://hubd-a:8080/") == "http://hubd-a:8080"

    catalog = f"sqlite:///{tmp_path / 'c.db'}"
    any_port = node(tmp_path, "node-a", catalog, port=0)
    assert register(any_port, 4242) == "http://127.0.0.1:4242"  # the port actually bound
    explicit = node(tmp_path, "node-a", catalog, port=0, node_url="http://a.example:80")
    assert register(explicit, 4242) == "http://a.example:80"
    bad = node(tmp_path, "node-b", catalog, node_url="ftp://b.example")
    with pytest.raises(ConfigError, match=r"node\.url"):
        register(bad, 8080)
    with any_port.catalog() as session:
        assert {n.name: n.url for n in session.scalars(select(Node))} == {
            "node-a": "http://a.example:80"
        }
    for ctx in (any_port, explicit, bad):
        ctx.close()


@pytest.fixture
def pair(hub: FakeHub, tmp_path: Path) -> Iterator[tuple[Context, Context]]:
    """Nodes A and B on one SQLite catalog, A holding the tiny model; B fetches in small parts."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    a = node(tmp_path, "node-a", url, endpoint=hub.endpoint)
    b = node(tmp_path, "node-b", url, endpoint=hub.endpoint, part_size=4096, parts=2)
    asyncio.run(mirror(a, RepoRef.parse(MODEL)))
    yield a, b
    a.close()
    b.close()


def test_a_node_serves_what_only_another_node_holds(
    pair: tuple[Context, Context], hub: FakeHub, tmp_path: Path
) -> None:
    a, b = pair
    files = tiny_model_files(seed=0)
    model = digests(a, MODEL)
    hub_gets = file_gets(hub, MODEL)
    with serving(a) as a_url, serving(b) as b_url:
        register(a, port(a_url))
        register(b, port(b_url))
        # A burst of requests for one missing blob: one fetch from A, every answer whole.
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(lambda _: request(f"{b_url}/{MODEL}/resolve/main/{BIG}"), range(8))
            )
        assert [(status, body == files[BIG]) for status, _, body in answers] == [(200, True)] * 8
        assert served_bytes(a_url) == len(files[BIG])

        snapshot = Path(snapshot_download(MODEL, endpoint=b_url, cache_dir=tmp_path / "hf"))
        assert {p: (snapshot / p).read_bytes() for p in files} == files
        assert served_bytes(a_url) == sum(len(c) for c in files.values())  # each blob once
        assert file_gets(hub, MODEL) == hub_gets  # from A, not from the Hub
        assert all(b.store.has_blob(d) for d in model)
        assert locations(b) == {d: {"node-a", "node-b"} for d in model}

        sha = sorted(model)[0]
        status, headers, body = request(
            f"{a_url}/api/hubd/blobs/{sha}", headers={"Range": "bytes=2-5"}
        )
        assert status == 206 and body == a.store.blob_path(sha).read_bytes()[2:6]
        status, headers, body = request(f"{a_url}/api/hubd/blobs/{'0' * 64}")
        assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
        status, _, body = request(f"{a_url}/api/hubd/blobs/..%2Fcatalog.db")
        assert status == 400 and "error" in json.loads(body)

    asyncio.run(mirror(a, RepoRef.parse(LORA)))  # A is down now: what only it holds is out of reach
    adapter = "adapter_model.safetensors"
    with serving(b) as b_url:
        status, headers, body = request(f"{b_url}/{LORA}/resolve/main/{adapter}")
        assert status == 503 and headers["X-Error-Code"] == "BlobUnavailable"
        message = json.loads(body)["error"]
        assert f"{LORA}/{adapter}" in message and "node-a" in message
        assert request(f"{b_url}/{MODEL}/resolve/main/{BIG}")[2] == files[BIG]  # B's own
    assert not any(b.store.has_blob(d) for d in digests(a, LORA) - model)
    assert list((b.settings.store_dir / "tmp").glob("*.partial")) == []
    # B verifies its own store: what only A holds is A's to verify, not damage here.
    report = verify_store(b)
    assert report.ok and report.elsewhere == len(digests(a, LORA) - model)
    assert report.blobs == len(model)


def test_a_node_serves_the_signatures_another_node_recorded(
    pair: tuple[Context, Context],
) -> None:
    """A recorded the revision, so its signatures and SLSA chain are in A's store; B copies
    them (checked) when asked for them, and keeps serving them once A is gone."""
    a, b = pair
    path = f"/api/hubd/models/{MODEL}/revision/main/attestations"
    a_hint = key_hint(node_key(a).public_key())
    with serving(b) as b_url:
        status, _, body = request(f"{b_url}{path}?local=1")  # B's own store: nothing yet
        assert status == 200 and json.loads(body)["signatures"] == {}
    with serving(a) as a_url, serving(b) as b_url:
        register(a, port(a_url))
        register(b, port(b_url))
        status, _, body = request(f"{b_url}{path}")
        copied = json.loads(body)
        assert status == 200 and list(copied["signatures"]) == [f"{a_hint}.sig"]
        assert len(copied["statements"]) == 1
    with serving(b) as b_url:  # A is down: B answers from its copy
        assert json.loads(request(f"{b_url}{path}")[2]) == copied
    assert may_use(b, MODEL, copied["commit"]).signers == []  # A's key is not trusted on B
    (b.settings.home / "trust").mkdir(parents=True)
    (b.settings.home / "trust" / "node-a.pem").write_bytes(public_pem(node_key(a).public_key()))
    assert may_use(b, MODEL, copied["commit"]).signers == ["node-a"]


def test_run_on_a_node_prepares_what_another_node_mirrored(
    pair: tuple[Context, Context], hub: FakeHub
) -> None:
    """`hubd run` / [[llm]] on B of a GGUF only A holds: B fetches the file and signatures."""
    a, b = pair
    gguf = "acme/tiny-llama-GGUF"
    hub.add_repo(gguf, tiny_gguf_files(base_model=MODEL))
    commit = asyncio.run(mirror(a, RepoRef.parse(gguf))).commit
    with serving(a) as a_url:
        register(a, port(a_url))
        prepared = prepare(b, RepoRef.parse(gguf))
    assert prepared.commit == commit and prepared.model.is_relative_to(b.settings.store_dir)
    assert prepared.model.read_bytes() == tiny_gguf_files(base_model=MODEL)[prepared.model.name]
    assert stored_signatures(b, gguf, commit)  # A's signature came along
    assert prepare(b, RepoRef.parse(gguf)).model == prepared.model  # local from now on


def test_a_sibling_needs_this_nodes_token_when_it_requires_auth(
    pair: tuple[Context, Context], tmp_path: Path
) -> None:
    a, b = pair
    guarded = node(tmp_path, "node-a", str(a.settings.catalog_url), auth_required=True)
    _, secret = create_token(a, "read", "nodes")  # the shared catalog's tokens: valid on every node
    token_file = tmp_path / "node.token"
    token_file.write_text(secret)
    with_token = node(tmp_path, "node-b", str(b.settings.catalog_url), node_token_file=token_file)
    with serving(guarded) as a_url, serving(b) as b_url:
        register(guarded, port(a_url))
        status, _, body = request(f"{b_url}/{MODEL}/resolve/main/{BIG}")
        assert status == 503 and "access denied" in json.loads(body)["error"]
        with serving(with_token) as b2_url:
            status, _, body = request(f"{b2_url}/{MODEL}/resolve/main/{BIG}")
        assert status == 200 and body == tiny_model_files(seed=0)[BIG]
    guarded.close()
    with_token.close()


def test_mirror_takes_what_a_sibling_holds_before_peers_and_the_hub(
    pair: tuple[Context, Context], hub: FakeHub
) -> None:
    a, b = pair
    asyncio.run(mirror(a, RepoRef.parse(LORA)))
    add_peer(b, "far", "http://127.0.0.1:9")
    with serving(a) as a_url:
        register(a, port(a_url))
        assert [s.endpoint for s in sources(b)] == [a_url, "http://127.0.0.1:9", hub.endpoint]
        assert [s.endpoint for s in sources(a)] == ["http://127.0.0.1:9", hub.endpoint]  # not A
        gets = file_gets(hub, LORA)
        result = asyncio.run(mirror(b, RepoRef.parse(LORA)))
    assert result.source == a_url and result.bytes_transferred > 0
    assert file_gets(hub, LORA) == gets
    lora = tiny_lora_files(base_model=MODEL)
    assert {p: b.store.blob_path(d).read_bytes() for p, d in paths(b, LORA).items()} == lora
    assert all(
        held == {"node-a", "node-b"} for d, held in locations(b).items() if d in digests(b, LORA)
    )


def test_a_node_silent_for_long_is_not_asked(pair: tuple[Context, Context]) -> None:
    """Daemons refresh their nodes row (heartbeat); one gone quiet is left out of the sources
    and the holders until it is heard from again."""
    a, b = pair
    register(a, 8081)
    assert sources(b)[0].endpoint == "http://127.0.0.1:8081"
    with a.catalog.begin() as session:
        session.execute(
            update(Node)
            .where(Node.name == "node-a")
            .values(last_seen=datetime.now(UTC) - NODE_ALIVE - timedelta(seconds=1))
        )
    assert "http://127.0.0.1:8081" not in [s.endpoint for s in sources(b)]
    with b.catalog() as session:
        assert holders(session, sorted(digests(a, MODEL))[0], exclude="node-b") == []
    with a.catalog.begin() as session:
        touch_node(session, "node-a")
    assert sources(b)[0].endpoint == "http://127.0.0.1:8081"


@pytest.mark.slow
def test_two_daemons_with_their_own_stores_on_one_postgresql_catalog(
    hub: FakeHub, tmp_path: Path, pg_url: str
) -> None:
    notes = os.urandom(50_000)
    hub.add_repo("acme/only-on-a", {"README.md": b"# only on a\n", "notes.txt": notes})

    def env(name: str) -> dict[str, str]:
        return {
            "HUBD_HOME": str(tmp_path / name),
            "HUBD_NODE_NAME": name,
            "HUBD_CATALOG_URL": pg_url,
            "HF_ENDPOINT": hub.endpoint,
            "HUBD_RETRIES": "1",
        }

    def cli(name: str, *args: str) -> str:
        proc = hubd_process(*args, env=env(name))
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return out

    for repo in (MODEL, LORA, "acme/only-on-a"):
        cli("node-a", "mirror", repo, "-q")
    daemons: dict[str, subprocess.Popen[str]] = {}
    urls: dict[str, str] = {}
    try:
        for name in ("node-a", "node-b"):
            url_file = tmp_path / f"{name}.url"
            daemons[name] = hubd_process(
                "daemon", "--port", "0", "--url-file", str(url_file), env=env(name)
            )
            deadline = time.monotonic() + 30
            while not url_file.exists():
                assert daemons[name].poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            urls[name] = url_file.read_text()
        hub_gets = file_gets(hub, MODEL)

        # An unmodified client on B gets every file whole; B fetched them from A.
        snapshot = Path(
            snapshot_download(MODEL, endpoint=urls["node-b"], cache_dir=tmp_path / "hf")
        )
        files = tiny_model_files(seed=0)
        assert {p: (snapshot / p).read_bytes() for p in files} == files
        assert file_gets(hub, MODEL) == hub_gets
        ctx = Context.open(
            load_settings({"HUBD_HOME": str(tmp_path / "node-b")}, catalog_url=pg_url)
        )
        model = digests(ctx, MODEL)
        assert all(ctx.store.has_blob(d) for d in model)  # node-b's own store
        held = locations(ctx)
        assert all(held[d] == {"node-a", "node-b"} for d in model)
        with ctx.catalog() as session:
            assert {n.name: n.url for n in session.scalars(select(Node))} == urls

        # B mirrors what A holds from A, not from the Hub.
        lora_gets = file_gets(hub, LORA)
        result = json.loads(cli("node-b", "mirror", LORA, "--json"))
        assert result["source"] == urls["node-a"] and file_gets(hub, LORA) == lora_gets

        # A stops: a file only A holds is a clear error on B, B's own files still serve.
        daemons["node-a"].terminate()
        daemons["node-a"].communicate(timeout=30)
        status, headers, body = request(f"{urls['node-b']}/acme/only-on-a/resolve/main/notes.txt")
        assert status == 503 and headers["X-Error-Code"] == "BlobUnavailable"
        assert "node-a" in json.loads(body)["error"]
        assert request(f"{urls['node-b']}/{MODEL}/resolve/main/{BIG}")[2] == files[BIG]
        ctx.close()
    finally:
        for proc in daemons.values():
            if proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
