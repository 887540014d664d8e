"""The web catalog in a real browser: Debian's Chromium driven by Playwright against the
daemon's app on loopback (tests/chromium.sh installs the browser; `make test` runs it first).

One browser for the module; each test opens its own context (cookies, viewport).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select
from webpages import BASE, GGUF, HOSTILE, LORA, Catalog, served_catalog

from hubd.catalog.models import Job, JobState

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent.parent / ".browser-tests/node_modules/axe-core/axe.min.js"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    with served_catalog(tmp_path_factory.mktemp("web")) as served:
        yield served


@pytest.fixture(scope="module")
def browser(catalog: Catalog) -> Iterator[Browser]:
    """Started after the catalog: Playwright's sync API holds an event loop in this thread."""
    assert Path(CHROMIUM).exists(), "no Chromium: run tests/chromium.sh (make test does)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    opened = context.new_page()
    yield opened
    context.close()


def repo_names(page: Page) -> list[str]:
    return page.locator(".repo .name").all_inner_texts()


def test_search_and_a_facet_change_the_url_and_the_list(page: Page, catalog: Catalog) -> None:
    page.goto(f"{catalog.url}/ui/")
    assert len(repo_names(page)) == 5
    page.fill("#search", "lora")
    page.press("#search", "Enter")
    page.wait_for_url(re.compile(r"q=lora"))
    assert repo_names(page) == [LORA]

    page.goto(f"{catalog.url}/ui/")
    page.locator('[data-facet="class"] a', has_text="open-weight-restricted").click()
    page.wait_for_url(re.compile(r"class=open-weight-restricted"))
    assert repo_names(page) == ["meta/tiny-llama3"]
    page.reload()  # the filter lives in the URL
    assert repo_names(page) == ["meta/tiny-llama3"]
    page.locator('[data-facet="class"] a.selected').click()  # clicking again clears it
    page.wait_for_url(re.compile(r"/ui/$"))
    assert len(repo_names(page)) == 5

    page.locator('[data-facet="format"] a', has_text="GGUF").click()
    page.wait_for_url(re.compile(r"weights=GGUF"))
    assert repo_names(page) == [GGUF]


def test_hostile_card_is_neutralised(page: Page, catalog: Catalog) -> None:
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{catalog.url}/ui/models/{HOSTILE}")
    card = page.locator("#card")
    expect(card).to_contain_text("A card that attacks its readers")
    page.click("text=click me")
    page.click("text=styled")
    page.wait_for_timeout(300)
    assert dialogs == []
    assert page.locator("#card script, #card iframe, #card svg").count() == 0
    handlers = page.evaluate(
        """() => [...document.querySelectorAll('#card *')].flatMap(e =>
             [...e.attributes].map(a => a.name + '=' + a.value))
             .filter(a => a.startsWith('on') || a.startsWith('style') || /javascript:/i.test(a))"""
    )
    assert handlers == []
    assert all(url.startswith(catalog.url) for url in requests), requests


def test_model_page_lineage_signatures_and_snippets(page: Page, catalog: Catalog) -> None:
    page.set_viewport_size({"width": 1100, "height": 1000})
    page.goto(f"{catalog.url}/ui/models/{LORA}")
    page.screenshot(path=catalog.artifacts / "web-model.png")  # docs/web-model.png is one
    svg = page.locator("svg.lineage")
    expect(svg).to_be_visible()
    expect(svg.locator(".edge-label")).to_have_text(["adapter · Apache-2.0"])
    expect(svg.locator(".node-name")).to_have_text([LORA, BASE])
    expect(page.locator(".sig")).to_contain_text("Signed by node")
    expect(page.locator("table").first).to_contain_text("verified (node)")
    expect(page.locator(".snippet", has_text="hf download")).to_contain_text(
        f"HF_ENDPOINT={catalog.url} hf download {LORA}"
    )
    svg.locator("a").click()  # the base is a link to its own page
    page.wait_for_url(re.compile(re.escape(f"/ui/models/{BASE}")))
    names = page.locator("svg.lineage .node-name").all_text_contents()
    assert names[0] == BASE and sorted(names[1:]) == [GGUF, LORA]  # built on it: below


def test_csp_header_and_no_violation(page: Page, catalog: Catalog) -> None:
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(str(e)))
    page.on(
        "response", lambda r: console.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    card_image = f"{catalog.url}/{HOSTILE}/resolve/"  # the card's <img src="x">: not in the repo
    for path in ("/ui/", f"/ui/models/{HOSTILE}", "/ui/audit", "/ui/ops"):
        answer = page.goto(f"{catalog.url}{path}")
        assert answer is not None and answer.status == 200
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp
    page.wait_for_timeout(2500)  # the operations page polls its jobs once
    assert [m for m in console if "Content Security Policy" in m or "Refused" in m] == []
    assert [m for m in console if card_image not in m and "status of 404" not in m] == []
    assert [m for m in console if card_image in m] != []


def test_keyboard_reaches_search(page: Page, catalog: Catalog) -> None:
    page.goto(f"{catalog.url}/ui/audit")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to search"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "search"
    page.keyboard.type("gguf")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/ui/\?q=gguf"))
    assert repo_names(page) == [GGUF]


def test_phone_width_has_no_horizontal_overflow(browser: Browser, catalog: Catalog) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        for name, path in (("catalog", "/ui/"), ("model", f"/ui/models/{LORA}")):
            page.goto(f"{catalog.url}{path}")
            page.screenshot(path=catalog.artifacts / f"web-{name}-phone.png", full_page=True)
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], (name, width)
        assert (catalog.artifacts / "web-model-phone.png").stat().st_size > 10_000
    finally:
        context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_accessibility_violation(
    browser: Browser, catalog: Catalog, scheme: Literal["light", "dark"]
) -> None:
    """axe-core (WCAG 2.1 A and AA rules) on every page, in both colour schemes."""
    assert AXE.exists(), "no axe-core: run tests/chromium.sh (make test does)"
    context = browser.new_context(bypass_csp=True, color_scheme=scheme)  # to inject axe only
    try:
        page = context.new_page()
        found = {}
        for path in ("/ui/", f"/ui/models/{LORA}", f"/ui/models/{HOSTILE}", "/ui/audit", "/ui/ops"):
            page.goto(f"{catalog.url}{path}")
            page.add_script_tag(path=str(AXE))
            result = page.evaluate(
                """() => axe.run(document, {runOnly: {type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"""
            )
            serious = [
                f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})"
                for v in result["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            if serious:
                found[path] = serious
        assert found == {}
    finally:
        context.close()


def login(page: Page, catalog: Catalog, token: str) -> None:
    page.goto(f"{catalog.guarded}/ui/")
    page.wait_for_url(re.compile(r"/ui/login$"))  # no session: the form, not a 401
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{catalog.guarded}/ui/")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def post(catalog: Catalog, path: str, fields: dict[str, str], cookie: str) -> int:
    """A form POST as another page would send it, with the browser's cookies; not followed."""
    body = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"{catalog.guarded}{path}", data=body, method="POST")
    request.add_header("Cookie", cookie)
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_login_csrf_write_scope_and_logout(page: Page, catalog: Catalog) -> None:
    login(page, catalog, catalog.read_token)
    assert len(repo_names(page)) == 5
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "hubd_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert catalog.read_token not in page.content() and catalog.read_token not in page.url
    jar = "; ".join(f"{c['name']}={c['value']}" for c in page.context.cookies())
    csrf = page.locator("form.logout input[name=csrf]").input_value()

    # A forged POST (another site's form: the cookie rides along, the CSRF token cannot).
    assert post(catalog, "/ui/ops/mirror", {"repo": BASE, "csrf": "forged"}, jar) == 403
    assert post(catalog, "/ui/ops/mirror", {"repo": BASE}, jar) == 403
    # A read token may look but not queue, even with the right CSRF token.
    page.goto(f"{catalog.guarded}/ui/ops")
    expect(page.locator("#mirror-repo")).to_have_count(0)
    assert post(catalog, "/ui/ops/mirror", {"repo": BASE, "csrf": csrf}, jar) == 403

    page.click("form.logout button")
    page.wait_for_url(re.compile(r"/ui/login$"))
    assert not [c for c in page.context.cookies() if c["name"] == "hubd_session"]
    assert post(catalog, "/ui/ops/mirror", {"repo": BASE, "csrf": csrf}, jar) == 303  # to login
    page.goto(f"{catalog.guarded}/ui/ops")
    page.wait_for_url(re.compile(r"/ui/login$"))  # the old session is gone server-side too

    login(page, catalog, catalog.write_token)
    page.goto(f"{catalog.guarded}/ui/ops")
    page.fill("#mirror-repo", BASE)
    page.click("text=Queue mirror")
    page.wait_for_url(f"{catalog.guarded}/ui/ops")
    row = page.locator("#jobs tr", has_text=BASE)
    expect(row.locator(".state")).to_have_text("queued")
    # No worker runs here: finish the job in the catalog and watch the page follow (app.js).
    with catalog.ctx.catalog.begin() as session:
        job = session.scalars(select(Job).where(Job.repo == BASE)).one()
        job.state, job.bytes_done, job.bytes_total = JobState.DONE, 2048, 2048
    expect(row.locator(".state")).to_have_text("done", timeout=6000)
    expect(row.locator(".bytes")).to_have_text("2.0 KB / 2.0 KB")


def test_a_wrong_token_is_refused_at_login(page: Page, catalog: Catalog) -> None:
    page.goto(f"{catalog.guarded}/ui/login")
    page.fill("#token", "hubd_not_a_token")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("invalid or revoked token")
    assert "hubd_not_a_token" not in page.content()
    assert not [c for c in page.context.cookies() if c["name"] == "hubd_session"]
