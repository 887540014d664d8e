"""The web catalog without a browser: the card sanitizer, the index's facets and keyset pages,
the JSON twins, auth, CSRF and sessions against the daemon's app on loopback."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from support.modelgen import tiny_model_files
from test_auth import self_signed
from webpages import BASE, GGUF, HOSTILE, LORA, RESTRICTED, Catalog, served_catalog

from hubd.audit import AuditReport
from hubd.audit.bom import spdx_problems
from hubd.audit.inheritance import UNKNOWN_BASE, Ancestor, Effective
from hubd.audit.licenses import License, LicenseClass
from hubd.catalog.models import RevisionState
from hubd.catalog.refusals import record_refusal
from hubd.catalog.revisions import require_revision
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.server.app import create_app
from hubd.server.web.card import TAGS, render
from hubd.server.web.index import CatalogIndex, Child, Entry, Query, Signing
from hubd.server.web.lineage import graph
from hubd.server.web.views import _snippets

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "payload",
    [
        "<script>alert(1)</script>",
        '<img src="x" onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="JaVaScRiPt&#58;alert(1)">x</a>',
        "[x](javascript:alert(1))",
        '<svg onload="alert(1)"><script>alert(1)</script></svg>',
        '<iframe src="https://example.org"></iframe>',
        '<p style="background:url(javascript:alert(1))">x</p>',
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        '<form action="https://example.org"><input name="token"></form>',
        '<object data="x.swf"></object><embed src="x">',
        "<meta http-equiv=refresh content='0;url=javascript:alert(1)'>",
    ],
)
def test_card_keeps_no_active_content(payload: str) -> None:
    html = render(f"---\nlicense: mit\n---\n# Card\n\n{payload}\n", "acme/m", "a" * 40)
    tags = re.findall(r"<([a-z0-9]+)([^>]*)>", html.lower())
    assert {name for name, _ in tags} <= TAGS, html
    attributes = {a for _, rest in tags for a in re.findall(r"\s([a-z-]+)=", rest)}
    assert attributes <= {"href", "src", "alt", "title", "rel"}, html
    links = re.findall(r'(?:href|src)="\s*([^"]*)"', html.lower())
    assert not [u for u in links if not u.startswith(("https:", "/acme/m/resolve/"))], html


def test_card_markdown_tables_links_and_relative_images() -> None:
    html = render(
        "---\nlicense: mit\n---\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "[docs](https://example.org/docs) ![plot](./img/plot.png) ![far](https://example.org/x.png)",
        "acme/m",
        "b" * 40,
    )
    assert "<table>" in html and "license: mit" not in html
    assert (
        'href="https://example.org/docs"' in html and 'rel="noopener noreferrer nofollow"' in html
    )
    assert f'src="/acme/m/resolve/{"b" * 40}/img/plot.png"' in html  # served from the store
    assert 'src="https://example.org/x.png"' in html  # kept, and the CSP loads none of it


def _entry(i: int, start: datetime) -> Entry:
    return Entry(
        repo=f"org-{i % 7}/model-{i:04d}",
        commit=f"{i:040x}",
        kind="adapter" if i % 5 == 0 else "model",
        license_class=["osi-open-source", "non-commercial", "unknown"][i % 3],
        spdx=["Apache-2.0", "CC-BY-NC-4.0", "NOASSERTION"][i % 3],
        verdict="open-weight",
        mof="none",
        mirrored_at=start + timedelta(seconds=(i * 37) % 1000),
        size=(i * 7919) % 5000,
        files=2,
        signing=Signing(("node",) if i % 2 else (), 0, ()),
        formats=("GGUF",) if i % 4 == 0 else ("safetensors",),
        compliant=True,
    )


def _index(entries: list[Entry]) -> CatalogIndex:
    report = AuditReport(datetime.now(UTC), "test", None, ())
    return CatalogIndex((len(entries),), report, entries, {})


@pytest.mark.parametrize("sort", ["name", "mirrored", "size"])
def test_index_pages_are_keyset_and_counts_exact(sort: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [_entry(i, start) for i in range(1000)]
    index = _index(entries)
    filters = {"kind": "model", "signer": "node"}
    wanted = [e for e in entries if e.kind == "model" and e.signing.signers]
    seen: list[str] = []
    after = None
    while True:
        page = index.page(Query("model-0", filters, sort, after, 37))
        seen += [e.repo for e in page.entries]
        assert page.total == len([e for e in wanted if "model-0" in e.repo])
        if page.next is None:
            break
        after = page.next
    assert sorted(seen) == sorted(e.repo for e in wanted if "model-0" in e.repo)
    assert len(seen) == len(set(seen))
    if sort == "mirrored":
        times = [index.entries[index.by_repo[r]].mirrored_at for r in seen]
        assert times == sorted(times, reverse=True)
    counts = {f.name: dict(f.values) for f in index.page(Query("", filters)).facets}
    assert counts["class"] == dict(Counter(e.license_class for e in wanted))
    assert counts["org"] == dict(Counter(e.org for e in wanted))
    assert counts["format"] == dict(Counter(f for e in wanted for f in e.formats))
    signed = [e for e in entries if e.signing.signers]  # what the kind facet counts among
    assert counts["kind"] == dict(Counter(e.kind for e in signed))
    models = [e for e in entries if e.kind == "model"]
    assert counts["signer"] == dict(
        Counter(e.signing.signers[0] if e.signing.signers else "unsigned" for e in models)
    )
    assert index.page(Query("", {"class": "no-such-class"})).total == 0


def test_a_cursor_survives_repos_added_meanwhile() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [_entry(i, start) for i in range(0, 200, 2)]
    first = _index(entries).page(Query(limit=10))
    assert first.next is not None
    grown = _index(entries + [_entry(i, start) for i in range(1, 20, 2)])  # before the cursor
    second = grown.page(Query(after=first.next, limit=10))
    assert second.entries[0].repo > first.entries[-1].repo
    assert not {e.repo for e in first.entries} & {e.repo for e in second.entries}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with served_catalog(tmp_path_factory.mktemp("web")) as served:
        yield served


def request(
    url: str,
    path: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = (
        http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=10, context=context)
        if context
        else http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        conn.close()


def form(fields: dict[str, str], cookies: dict[str, str]) -> dict[str, object]:
    return {
        "method": "POST",
        "body": urllib.parse.urlencode(fields).encode(),
        "headers": {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
        },
    }


def cookies_of(headers: http.client.HTTPMessage) -> dict[str, str]:
    found = {}
    for header in headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        found[name] = rest.split(";", 1)[0]
    return found


def test_every_page_has_a_json_twin(catalog: Catalog) -> None:
    def twin(path: str) -> dict[str, object]:
        status, headers, body = request(catalog.url, path)
        assert status == 200 and headers["Content-Type"].startswith("application/json"), body
        data: dict[str, object] = json.loads(body)
        return data

    listed = twin("/ui/?format=json")
    assert listed["total"] == 5
    assert {r["repo"] for r in listed["repos"]} == {BASE, LORA, GGUF, RESTRICTED, HOSTILE}
    facets = {f["name"]: {v["value"]: v["count"] for v in f["values"]} for f in listed["facets"]}
    assert facets["kind"] == {"model": 4, "adapter": 1}
    assert facets["signer"] == {"node": 5}
    assert facets["format"] == {"safetensors": 4, "GGUF": 1}
    assert twin("/ui/?format=json&class=open-weight-restricted")["total"] == 1

    lora = twin(f"/ui/models/{LORA}?format=json")
    assert lora["kind"] == "adapter" and lora["signatures"]["signers"] == ["node"]
    assert lora["lineage"][0]["repo"] == BASE
    assert all(
        f["state"] == "verified" and len(f["sha256"]) == 64 for f in lora["revision"]["files"]
    )
    assert lora["statements"][0]["verdict"] == "verified"
    assert set(lora["snippets"]) == {"hf download", "transformers", "hubd"}  # no GGUF to run
    gguf = twin(f"/ui/models/{GGUF}?format=json")["snippets"]
    assert (
        f'Llama.from_pretrained(repo_id="{GGUF}", filename="tiny-llama-Q4_K_M.gguf")'
        in gguf["llama-cpp-python"]
    )
    assert f"hubd run {GGUF}@" in gguf["hubd run"]
    base = twin(f"/ui/models/{BASE}?format=json")
    assert {d["repo"] for d in base["derived"]} == {LORA, GGUF}

    dashboard = twin("/ui/audit?format=json")
    assert dashboard["summary"]["by_class"] == {"open-weight-restricted": 1, "osi-open-source": 4}
    assert twin(f"/ui/audit?format=json&repo={RESTRICTED}")["summary"]["revisions"] == 1
    ops = twin("/ui/ops?format=json")
    assert ops["nodes"][0]["name"] == "web-node"


def test_report_and_bom_downloads(catalog: Catalog) -> None:
    status, headers, body = request(catalog.url, f"/ui/audit/report.spdx.json?repo={LORA}")
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    spdx = json.loads(body)
    assert spdx_problems(spdx) == [] and LORA in body.decode()
    assert BASE in body.decode() and RESTRICTED not in body.decode()  # the selection, and its base
    status, _, body = request(catalog.url, "/ui/audit/report.cdx.json")
    assert status == 200 and json.loads(body)["bomFormat"] == "CycloneDX"
    status, _, body = request(catalog.url, "/ui/audit/report.md")
    assert status == 200 and HOSTILE in body.decode()
    assert request(catalog.url, "/ui/audit/report.html")[0] == 200
    assert request(catalog.url, "/ui/audit/report.exe")[0] == 404
    assert request(catalog.url, "/ui/audit?repo=nobody/none&format=json")[0] == 400


def test_bad_queries_are_refused_with_the_csp_on(catalog: Catalog) -> None:
    status, headers, body = request(catalog.url, "/ui/?sort=bogus")
    assert (
        status == 400
        and b"sort" in body
        and "default-src 'none'" in headers["Content-Security-Policy"]
    )
    status, headers, body = request(catalog.url, "/ui/?sort=bogus&format=json")
    assert status == 400 and headers["X-Error-Code"] == "InvalidRequest"
    assert request(catalog.url, "/ui/?kind=model&kind=adapter")[0] == 400
    assert request(catalog.url, "/ui/models/nobody/none")[0] == 404
    assert request(catalog.url, "/ui/static/0000/app.css")[0] == 404
    status, headers, _ = request(catalog.url, "/")
    assert status == 302 and headers["Location"] == "/ui/"


def test_auth_required_pages(catalog: Catalog) -> None:
    status, headers, _ = request(catalog.guarded, "/ui/")
    assert status == 303 and headers["Location"] == "/ui/login"
    status, headers, _ = request(catalog.guarded, "/ui/?format=json")
    assert status == 401 and headers["X-Error-Code"]  # scripts get the API's answer
    bearer = {"Authorization": f"Bearer {catalog.read_token}"}
    assert request(catalog.guarded, "/ui/?format=json", headers=bearer)[0] == 200
    assert request(catalog.guarded, "/ui/login")[0] == 200  # public, and so are the assets
    assert request(catalog.guarded, f"/ui/?token={catalog.read_token}")[0] == 303  # not a login

    status, headers, page = request(catalog.guarded, "/ui/login")
    jar = cookies_of(headers)
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert csrf is not None and jar["hubd_csrf"] == csrf[1].decode()
    fields = {"token": catalog.read_token, "csrf": "forged"}
    assert request(catalog.guarded, "/ui/login", **form(fields, jar))[0] == 403
    fields["csrf"] = jar["hubd_csrf"]
    assert request(catalog.guarded, "/ui/login", **form(fields, {}))[0] == 403
    status, headers, _ = request(catalog.guarded, "/ui/login", **form(fields, jar))
    assert status == 303
    (cookie,) = [c for c in headers.get_all("Set-Cookie") or [] if c.startswith("hubd_session=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    session = {"hubd_session": cookies_of(headers)["hubd_session"]}
    status, _, body = request(
        catalog.guarded, "/ui/ops", headers={"Cookie": f"hubd_session={session['hubd_session']}"}
    )
    assert status == 200 and catalog.read_token.encode() not in body


def test_a_write_session_adds_to_the_watch_list(catalog: Catalog) -> None:
    _, headers, _ = request(catalog.guarded, "/ui/login")
    jar = cookies_of(headers)
    fields = {"token": catalog.write_token, "csrf": jar["hubd_csrf"]}
    _, headers, _ = request(catalog.guarded, "/ui/login", **form(fields, jar))
    session = cookies_of(headers)
    _, _, page = request(
        catalog.guarded, "/ui/ops", headers={"Cookie": f"hubd_session={session['hubd_session']}"}
    )
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    watch = {"repo": BASE, "every": "6h", "csrf": csrf[1].decode()}
    assert request(catalog.guarded, "/ui/ops/watch", **form(watch, session))[0] == 303
    assert (
        request(catalog.guarded, "/ui/ops/watch", **form({**watch, "every": "1s"}, session))[0]
        == 400
    )
    bearer = {"Authorization": f"Bearer {catalog.read_token}"}
    _, _, body = request(catalog.guarded, "/ui/ops?format=json", headers=bearer)
    assert [w["repo"] for w in json.loads(body)["watches"]] == [BASE]


@contextmanager
def serving_tls(ctx: Context, tmp: Path) -> Iterator[tuple[str, ssl.SSLContext]]:
    cert, key = self_signed(tmp)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(ctx), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_side)
    loop.run_until_complete(site.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield (
            f"https://127.0.0.1:{runner.addresses[0][1]}",
            ssl.create_default_context(cafile=str(cert)),
        )
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_session_cookie_is_secure_over_tls(catalog: Catalog, tmp_path: Path) -> None:
    guarded = replace(
        catalog.ctx, settings=catalog.ctx.settings.model_copy(update={"auth_required": True})
    )
    with serving_tls(guarded, tmp_path) as (url, trusted):
        _, headers, _ = request(url, "/ui/login", context=trusted)
        jar = cookies_of(headers)
        fields = {"token": catalog.read_token, "csrf": jar["hubd_csrf"]}
        status, headers, _ = request(url, "/ui/login", context=trusted, **form(fields, jar))
        assert status == 303
        (cookie,) = [
            c for c in headers.get_all("Set-Cookie") or [] if c.startswith("hubd_session=")
        ]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie


def test_the_index_follows_the_catalog(catalog: Catalog) -> None:
    """A repo mirrored while the daemon serves shows up once the background rebuild is done;
    pages meanwhile answer from the previous index instead of waiting."""
    catalog.hub.add_repo("late/arrival", tiny_model_files(seed=9))
    asyncio.run(mirror(catalog.ctx, RepoRef.parse("late/arrival")))
    totals = []
    for _ in range(100):
        _, _, body = request(catalog.url, "/ui/?format=json")
        totals.append(json.loads(body)["total"])
        if totals[-1] == 6:
            break
        time.sleep(0.1)
    assert totals[-1] == 6 and set(totals) <= {5, 6}


def test_lineage_graph_of_a_merge_with_a_shared_base() -> None:
    """merge <- (left, right) <- root: root is drawn once, above both, with one edge each."""
    apache = License("apache-2.0", "Apache-2.0", LicenseClass.OSI, "")
    llama = License("llama3", "LicenseRef-Llama-3", LicenseClass.RESTRICTED, "")
    ancestors = (
        Ancestor("org/left", "merge", "org/merge", "a" * 40, apache),
        Ancestor("org/root", "finetune", "org/left", "b" * 40, llama),
        Ancestor("org/right", "merge", "org/merge", None, UNKNOWN_BASE),
        Ancestor("org/root", "finetune", "org/right", "b" * 40, llama),
        Ancestor("org/root", "finetune", "org/left", "b" * 40, llama),  # reached twice
    )
    effective = Effective(llama, (apache, llama), ancestors, "")
    children = [Child(f"org/q{i}", "quantized", "LicenseRef-Llama-3", "x") for i in range(12)]
    drawn = graph("org/merge", effective, children)
    y = {n.repo: n.y for n in drawn.nodes}
    assert y["org/root"] < y["org/left"] == y["org/right"] < y["org/merge"] < y["org/q0"]
    assert [n.repo for n in drawn.nodes].count("org/root") == 1
    assert len(drawn.edges) == 4 + 9 and drawn.hidden == 3  # 9 children drawn, 3 counted
    assert not next(n for n in drawn.nodes if n.repo == "org/right").in_catalog
    assert {e.license for e in drawn.edges if e.relation == "quantized"} == {"LicenseRef-Llama-3"}
    assert all(0 < n.x < drawn.width and 0 < n.y < drawn.height for n in drawn.nodes)


def test_a_revision_that_failed_verification_has_no_page(catalog: Catalog) -> None:
    with catalog.ctx.catalog.begin() as session:
        revision = require_revision(session, HOSTILE, None)
        revision.state = RevisionState.FAILED
        commit = revision.commit
    status, headers, body = request(catalog.url, f"/ui/models/{HOSTILE}?rev={commit}&format=json")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    assert b"did not verify" in body


def test_a_gguf_lora_runs_on_its_base() -> None:
    found = _snippets("http://hub:8080", "acme/lora", "c" * 40, ["adapter.gguf"], True, "acme/m")
    assert "Llama.from_pretrained" not in str(found)
    assert found["hubd run"] == (
        f"hubd mirror acme/lora@{'c' * 40} --with-base --from http://hub:8080\n"
        f'hubd run acme/m --lora acme/lora@{"c" * 40} -p "Hello"'
    )
    assert found["hf download"].startswith("HF_ENDPOINT=http://hub:8080 HF_TOKEN=<your hubd token>")


def test_an_org_named_ui_is_still_behind_the_api_auth(catalog: Catalog) -> None:
    """The pages own their routes, not every path under /ui/: a repo of an org "ui" resolves
    through the Hub API and its bearer check."""
    catalog.hub.add_repo("ui/trap", tiny_model_files(seed=11))
    asyncio.run(mirror(catalog.ctx, RepoRef.parse("ui/trap")))
    path = "/ui/trap/resolve/main/config.json"
    status, headers, _ = request(catalog.guarded, path)
    assert status == 401 and "Content-Security-Policy" not in headers
    bearer = {"Authorization": f"Bearer {catalog.read_token}"}
    assert request(catalog.guarded, path, headers=bearer)[0] == 200
    assert request(catalog.guarded, "/ui/no/such/page")[0] == 401  # no page: the API's answer


def test_operations_show_the_pull_through_refusals(catalog: Catalog) -> None:
    """What the proxy refused (proxy_refusals) is on the operations page, escaped, newest
    first, and in its JSON twin."""
    ctx = catalog.ctx
    record_refusal(ctx.catalog, "web-node", "acme/nc", "a" * 40, "audit", "denied <b>by</b> #1")
    record_refusal(ctx.catalog, "web-node", "evil/x", None, "deny", "proxy.deny: evil/*")
    status, _, body = request(catalog.url, "/ui/ops?format=json")
    refused = json.loads(body)["refusals"]
    assert status == 200 and [(r["repo"], r["rule"]) for r in refused[:2]] == [
        ("evil/x", "deny"),
        ("acme/nc", "audit"),
    ]
    status, _, page = request(catalog.url, "/ui/ops")
    assert status == 200 and b"denied &lt;b&gt;by&lt;/b&gt; #1" in page
    assert b"acme/nc@aaaaaaaaaaaa" in page and b"<b>by</b>" not in page
