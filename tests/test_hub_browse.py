"""Browsing and logging in against hubd: `GET /api/models`, whoami-v2 and auth-check, through
the real huggingface_hub client and the real `hf` CLI, with auth off and on."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alembic import command
from alembic.config import Config
from conftest import LORA, MODEL
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import paginate
from sqlalchemy import insert
from support.fakehub import FakeHub
from test_server import serving

from hubd.catalog.db import MIGRATIONS, create_catalog_engine, open_catalog
from hubd.catalog.listing import hub_models
from hubd.catalog.models import Base
from hubd.catalog.revisions import CardRecord, FileRecord, RevisionRecord, record_revision
from hubd.cluster.tokens import create_token
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

RECORDINGS = Path(__file__).parent / "recordings"
HF = str(Path(sys.executable).with_name("hf"))
SMALL = [f"zeta/small-{i}" for i in range(5)]
UNKNOWN_TO_HUBD = {"likes", "downloads", "trendingScore"}  # left out, never invented


def recorded(name: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())["response"]
    return answer


def get(url: str, path: str, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
    response = conn.getresponse()
    body = response.read()
    return response.status, dict(response.headers), json.loads(body) if body else None


def small_repo(i: int) -> dict[str, bytes]:
    card = f"---\nlicense: mit\nlibrary_name: transformers\ntags: [demo, n{i}]\n---\n# small {i}\n"
    return {"README.md": card.encode(), "config.json": json.dumps({"n": i}).encode()}


@pytest.fixture
def catalog(ctx: Context, hub: FakeHub) -> Context:
    """Seven repos: the tiny model and its LoRA (acme), five small MIT ones (zeta), the first
    of which is mirrored again at a new commit: it is listed once, with that one, last by time."""
    for i, repo in enumerate(SMALL):
        hub.add_repo(repo, small_repo(i))
    for repo in (MODEL, LORA, *SMALL):
        asyncio.run(mirror(ctx, RepoRef.parse(repo)))
    hub.add_repo(SMALL[0], {**small_repo(0), "extra.txt": b"second commit"})
    asyncio.run(mirror(ctx, RepoRef.parse(SMALL[0])))
    return ctx


BY_TIME = [MODEL, LORA, *SMALL[1:], SMALL[0]]


@pytest.fixture
def url(catalog: Context) -> Iterator[str]:
    with serving(catalog) as served:
        yield served


def guarded(ctx: Context) -> Context:
    return replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))


def test_list_models_answers_the_hubs_shape(url: str) -> None:
    hub = recorded("models.list")
    status, headers, body = get(url, "/api/models?author=acme&limit=5&search=tiny")
    assert status == hub["status"] == 200 and headers["Content-Type"].startswith("application/json")
    assert [m["id"] for m in body] == [MODEL, LORA]
    hub_keys = set(hub["json"][0])
    for entry in body:
        assert (
            hub_keys - UNKNOWN_TO_HUBD <= set(entry) <= hub_keys | {"pipeline_tag", "library_name"}
        )
        assert entry["modelId"] == entry["id"] and entry["private"] is False
        assert "license:apache-2.0" in entry["tags"]
    assert "Link" not in headers


def test_hf_api_list_models(url: str) -> None:
    api = HfApi(endpoint=url)
    assert [m.id for m in api.list_models(search="TINY-llama")] == [MODEL, LORA]
    assert [m.id for m in api.list_models(author="zeta", limit=2)] == SMALL[:2]
    assert [m.id for m in api.list_models(filter="license:mit")] == SMALL
    assert [m.id for m in api.list_models(filter=["demo", "n3"])] == [SMALL[3]]
    assert list(api.list_models(search="no-such-model")) == []
    model = next(iter(api.list_models(author="zeta", full=True, cardData=True)))
    assert model.created_at is not None and model.library_name == "transformers"
    assert model.sha is not None and model.card_data is not None
    assert model.card_data["license"] == "mit"
    assert [s.rfilename for s in model.siblings or []] == ["README.md", "config.json", "extra.txt"]
    assert model.likes is None and model.downloads is None  # hubd does not know them
    expanded = next(iter(api.list_models(author="acme", expand=["author", "sha"])))
    assert expanded.author == "acme" and expanded.sha and expanded.tags is None
    assert [m.id for m in api.list_models(sort="last_modified")] == BY_TIME[::-1]
    assert [m.id for m in api.list_models(sort="created_at", limit=1)] == [SMALL[0]]


def test_link_pagination_returns_every_repo_once(url: str) -> None:
    every = [MODEL, LORA, *SMALL]
    pages = [m["id"] for m in paginate(f"{url}/api/models", params={"limit": 3}, headers={})]
    assert pages == sorted(every)
    status, headers, body = get(url, "/api/models?limit=3")
    assert status == 200 and len(body) == 3 and 'rel="next"' in headers["Link"]
    by_time = {"limit": 2, "sort": "lastModified", "direction": 1}
    assert [m["id"] for m in paginate(f"{url}/api/models", params=by_time, headers={})] == BY_TIME
    by_time["direction"] = -1
    got = [m["id"] for m in paginate(f"{url}/api/models", params=by_time, headers={})]
    assert got == BY_TIME[::-1]
    tagged = {"limit": 2, "filter": "license:mit"}
    assert [m["id"] for m in paginate(f"{url}/api/models", params=tagged, headers={})] == SMALL


@pytest.mark.parametrize(
    "query",
    ["sort=downloads", "direction=2", "limit=0", "limit=x", "cursor=%%%", "expand[]=nonsense"],
)
def test_bad_listing_parameters_are_json_errors(url: str, query: str) -> None:
    status, headers, body = get(url, f"/api/models?{query}")
    assert status == 400 and headers["X-Error-Code"] == "InvalidRequest"
    assert headers["X-Error-Message"] and body["error"]


def test_hf_models_ls_cli(url: str, tmp_path: Path) -> None:
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [HF, "models", "ls", "--search", "small-3"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert SMALL[3] in result.stdout and MODEL not in result.stdout


def test_list_models_follows_auth(catalog: Context) -> None:
    ctx = guarded(catalog)
    _, secret = create_token(ctx, "read", "reader")
    with serving(ctx) as url:
        status, headers, _ = get(url, "/api/models")
        assert status == 401 and headers["X-Error-Message"]
        with pytest.raises(HfHubHTTPError):
            list(HfApi(endpoint=url, token=False).list_models())
        assert len(list(HfApi(endpoint=url, token=secret).list_models(author="zeta"))) == 5


def test_whoami(catalog: Context) -> None:
    _, reader = create_token(catalog, "read", "alice")
    _, writer = create_token(catalog, "write", "")
    with serving(catalog) as url:
        me = HfApi(endpoint=url).whoami(token=reader)
        assert me["type"] == "user" and me["name"] == "alice" and me["orgs"] == []
        assert me["auth"]["accessToken"] == {
            "displayName": "alice",
            "role": "read",
            "createdAt": me["auth"]["accessToken"]["createdAt"],
        }
        assert HfApi(endpoint=url).whoami(token=writer)["auth"]["accessToken"]["role"] == "write"
        hub = recorded("whoami-v2")
        for token in (None, "hubd_wrong"):
            status, headers, body = get(url, "/api/whoami-v2", token)
            assert status == hub["status"] == 401
            assert headers["X-Error-Message"] == body["error"]
            assert body["error"] == "Invalid credentials in Authorization header"
            assert "WWW-Authenticate" in headers
    with serving(guarded(catalog)) as url:
        assert HfApi(endpoint=url).whoami(token=reader)["name"] == "alice"
        assert get(url, "/api/whoami-v2", "hubd_wrong")[0] == 401


@pytest.mark.parametrize("required", [False, True])
def test_hf_auth_login_and_whoami_cli(catalog: Context, tmp_path: Path, required: bool) -> None:
    ctx = guarded(catalog) if required else catalog
    _, secret = create_token(ctx, "read", "ci-bot")
    hf_home = tmp_path / "hf-home"
    with serving(ctx) as url:
        env = {**os.environ, "HF_ENDPOINT": url, "HF_HOME": str(hf_home)}

        def hf(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([HF, *args], env=env, capture_output=True, text=True)

        login = hf("auth", "login", "--token", secret)
        assert login.returncode == 0, login.stderr
        assert (hf_home / "token").read_text().strip() == secret
        assert "ci-bot" in (hf_home / "stored_tokens").read_text()
        whoami = hf("auth", "whoami")
        assert whoami.returncode == 0, whoami.stderr
        assert "ci-bot" in whoami.stdout
        refused = hf("auth", "login", "--token", "hubd_wrong")
        assert refused.returncode != 0


def test_auth_check(catalog: Context) -> None:
    with serving(catalog) as url:
        HfApi(endpoint=url).auth_check(MODEL)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=url).auth_check("acme/does-not-exist")
        status, headers, body = get(url, "/api/models/acme/does-not-exist/auth-check")
        assert status == 404 and headers["X-Error-Code"] == "RepoNotFound" and body["error"]
        assert get(url, "/api/models/acme/..%2Fx/auth-check")[0] == 400
    ctx = guarded(catalog)
    _, secret = create_token(ctx, "read", "reader")
    with serving(ctx) as url:
        HfApi(endpoint=url, token=secret).auth_check(MODEL)
        with pytest.raises(RepositoryNotFoundError):
            HfApi(endpoint=url, token=secret).auth_check("acme/does-not-exist")
        status, headers, _ = get(url, f"/api/models/{MODEL}/auth-check")
        assert status == 401 and headers["X-Error-Message"]
        with pytest.raises(HfHubHTTPError) as refused:
            HfApi(endpoint=url, token="hubd_wrong").auth_check(MODEL)
        assert refused.value.response.status_code == 401


def test_migration_fills_the_tags_of_cards_already_recorded(tmp_path: Path) -> None:
    """A catalog of 0007 lists its repos by tag after the upgrade, as if recorded today."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    engine = create_catalog_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    now = datetime.now(UTC)
    card = {"license": "mit", "library_name": "peft", "tags": ["demo"], "language": ["en"]}
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0007")
        for table, values in {
            "repos": {"id": 1, "repo_id": "acme/old", "kind": "model", "created_at": now},
            "revisions": {
                "id": 1,
                "repo_pk": 1,
                "commit": "1" * 40,
                "state": "verified",
                "mirrored_at": now,
                "source_endpoint": "http://peer",
                "is_adapter": False,
            },
            "model_cards": {
                "revision_pk": 1,
                "license": "mit",
                "base_model": ["acme/base"],
                "datasets": [],
                "tags": ["demo"],
                "pipeline_tag": "text-generation",
                "language": ["en"],
                "data": card,
            },
        }.items():
            connection.execute(insert(Base.metadata.tables[table]).values(values))
    engine.dispose()
    factory = open_catalog(url)  # migrates to the head
    with factory() as session:
        page = hub_models(session, limit=10, tags=["peft", "license:mit"])
        assert [(m.repo_id, m.library_name) for m in page.models] == [("acme/old", "peft")]
        assert page.models[0].tags == [
            "demo", "peft", "text-generation", "en", "base_model:acme/base", "license:mit"
        ]  # fmt: skip
        assert hub_models(session, limit=10, tags=["other"]).models == []
    factory.kw["bind"].dispose()


def _tagged_catalog(url: str) -> None:
    """60 repos: "common" on 40 latest revisions, "rare" on 4, and on an older revision of a
    repo whose latest lost it (never listed); "license:mit" on every third."""
    factory = open_catalog(url)
    with factory.begin() as session:
        for i in range(60):
            tags = ["common"] * (i % 3 != 0) + ["rare"] * (i % 15 == 1)
            for n, revision_tags in enumerate([["rare"], tags] if i == 7 else [tags]):
                record = RevisionRecord(
                    repo_id=f"org-{i % 4}/m-{i:02d}",
                    commit=f"{i * 10 + n:040x}",
                    source_endpoint="http://hub",
                    refs=["main"],
                    files=[FileRecord("a.bin", 1, f"{i * 10 + n:064x}", None, True)],
                    card=CardRecord(license="mit" if i % 3 == 0 else None, tags=revision_tags),
                    is_adapter=False,
                    base_model=None,
                    node="n1",
                    client="hubd/test",
                    fetched_at=datetime.now(UTC),
                )
                record_revision(session, record)
    factory.kw["bind"].dispose()


@pytest.mark.parametrize("tags", [["common"], ["rare"], ["common", "rare"], ["license:mit"]])
@pytest.mark.parametrize("by_time", [False, True])
def test_tag_filters_page_exactly_whichever_tag_drives(
    catalog_url: str, tags: list[str], by_time: bool
) -> None:
    """With 60 repos and pages of 5, a tag on more than sqrt(5 x 60) revisions is checked along
    the order and a rarer one is sought: both give every repo whose latest revision carries
    all the tags, once, in order."""
    _tagged_catalog(catalog_url)
    factory = open_catalog(catalog_url)
    with factory() as session:
        everything = hub_models(session, limit=1000, by_time=by_time, with_files=True)
        expected = [m.repo_id for m in everything.models if set(tags) <= set(m.tags)]
        got, after = [], None
        while True:
            page = hub_models(
                session, limit=5, after=after, tags=tags, by_time=by_time, with_files=True
            )
            got += [m.repo_id for m in page.models]
            assert all(m.files == [("a.bin", 1)] and m.pipeline_tag is None for m in page.models)
            if page.next is None:
                break
            after = page.next
    factory.kw["bind"].dispose()
    assert got == expected
    assert ("org-3/m-07" in got) == (tags == ["common"])  # its older revision had "rare"
    sizes = {("common",): 40, ("rare",): 4, ("common", "rare"): 4, ("license:mit",): 20}
    assert len(expected) == sizes[tuple(tags)]
