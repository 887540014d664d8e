"""The pages: catalog, model, audit dashboard, operations; each a view returning its data
(the JSON twin) and what only the HTML needs. Queries and audits run in threads, from the
catalog's own query functions, views and the audit modules.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from aiohttp import web
from pydantic import Field, StringConstraints, ValidationError

from ...audit import audit
from ...audit import bom as boms
from ...audit import report as reports
from ...audit.results import RevisionAudit
from ...catalog.models import RevisionState
from ...catalog.nodes import list_nodes
from ...catalog.refusals import recent_refusals
from ...catalog.revisions import get_repo, require_revision
from ...catalog.views import repo_detail, revision_detail
from ...cluster.jobs import check_source, enqueue, list_jobs
from ...cluster.watch import add_watch, list_watches, parse_every
from ...context import Context
from ...errors import InvalidRequest, RevisionNotFound, SignatureInvalid
from ...ops.requests import MirrorRequest
from ...refs import RepoRef
from ...trust.keys import trusted_signers
from ...trust.provenance import chain_path, check_envelope, read_chain
from ...validation import Closed, problem
from ..hfapi import CONTEXT
from . import charts, session
from .card import render as render_card
from .index import SORTS, CatalogIndex, Query, Signing, formats, overview, signing
from .lineage import graph
from .render import INDEXER, PREFIX, Rendered

Text = Annotated[str, StringConstraints(max_length=200)]
SHOWN = 100  # rows of each dashboard list
REFUSALS_SHOWN = 50  # the newest pull-through refusals on the operations page


class CatalogParams(Closed):
    """The catalog page's query string: what links and the search form send."""

    q: Text = ""
    kind: Text | None = None
    class_: Annotated[Text | None, Field(alias="class")] = None
    spdx: Text | None = None
    org: Text | None = None
    verdict: Text | None = None
    mof: Text | None = None
    signer: Text | None = None
    format: Literal["json", "html"] | None = None
    weights: Text | None = None  # the format facet: ``format=`` asks for the JSON twin
    sort: Literal["name", "mirrored", "size"] = "name"
    after: Annotated[str, StringConstraints(max_length=400)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50

    def filters(self) -> dict[str, str]:
        values = {
            "kind": self.kind,
            "class": self.class_,
            "spdx": self.spdx,
            "org": self.org,
            "verdict": self.verdict,
            "mof": self.mof,
            "signer": self.signer,
            "format": self.weights,
        }
        return {k: v for k, v in values.items() if v}


PARAM = {"format": "weights"}  # facet -> its query parameter, where the two differ


def _params(request: web.Request) -> CatalogParams:
    query = request.query
    if any(len(query.getall(k)) > 1 for k in query):
        raise InvalidRequest("each catalog filter takes one value")
    try:
        return CatalogParams.model_validate(dict(query))
    except ValidationError as exc:
        raise InvalidRequest(f"invalid catalog query: {problem(exc)}") from None


def _href(params: dict[str, str]) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"{PREFIX}?{urlencode(kept)}" if kept else PREFIX


async def catalog(request: web.Request) -> Rendered:
    """GET /ui/?q=&kind=&class=&spdx=&org=&verdict=&mof=&signer=&weights=&sort=&after="""
    params = _params(request)
    filters = params.filters()
    index = await request.app[INDEXER].get()
    found = index.page(Query(params.q, filters, params.sort, params.after, params.limit))
    base = {"q": params.q, **{PARAM.get(k, k): v for k, v in filters.items()}}
    if params.sort != "name":
        base["sort"] = params.sort
    if params.format == "json":  # the twin's links lead to twins
        base["format"] = "json"
    facets = []
    for facet in found.facets:
        key = PARAM.get(facet.name, facet.name)
        chosen = filters.get(facet.name)
        values = [
            {
                "value": value,
                "count": count,
                "selected": value == chosen,
                "href": _href({**base, key: "" if value == chosen else value}),
            }
            for value, count in facet.values
        ]
        facets.append({"name": facet.name, "label": facet.label, "values": values})
    following = _href({**base, "after": found.next}) if found.next else None
    data = {
        "query": {"q": params.q, "filters": filters, "sort": params.sort},
        "total": found.total,
        "repos": [e.to_json() for e in found.entries],
        "facets": facets,
        "next": following,
    }
    sorts = [
        (s, _href({**base, "sort": "" if s == "name" else s}), s == params.sort) for s in SORTS
    ]
    extra = {"entries": found.entries, "sorts": sorts, "clear": _href({"q": params.q})}
    return Rendered("catalog.html", data, extra)


@dataclass(frozen=True)
class Statement:
    builder: str
    source: str
    finished: str
    signer: str | None
    verdict: str  # verified | untrusted key | invalid: why

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _statements(ctx: Context, repo_id: str, commit: str, files: dict[str, str]) -> list[Statement]:
    """The revision's SLSA chain, each statement checked on its own (one broken is shown as
    such, the others still are)."""
    signers = trusted_signers(ctx)
    found = []
    chain = read_chain(chain_path(ctx, repo_id, commit))
    for i, env in enumerate(chain):
        label = f"{repo_id}@{commit[:12]}: provenance #{i}"
        try:
            attested = check_envelope(env, signers, commit, files, label)
        except SignatureInvalid as exc:
            found.append(Statement("?", "?", "", None, f"invalid: {exc.message}"))
            continue
        summary = attested.summary()
        verdict = "verified" if attested.signer else "untrusted key"
        found.append(
            Statement(summary.builder, summary.source, summary.finished, attested.signer, verdict)
        )
    return found


def _snippets(
    origin: str, repo_id: str, commit: str, paths: list[str], guarded: bool, base: str | None
) -> dict[str, str]:
    """How to use the model from this registry, with the tools people already have. llama.cpp
    (``Llama.from_pretrained``, ``hubd run``) only where there is a GGUF to load: a GGUF LoRA
    runs on its base (``base`` set for adapters)."""
    token = " HF_TOKEN=<your hubd token>" if guarded else ""
    gguf = next((p for p in paths if p.lower().endswith(".gguf")), None)
    env = f'import os\nos.environ["HF_ENDPOINT"] = "{origin}"\n'
    found = {
        "hf download": f"HF_ENDPOINT={origin}{token} hf download {repo_id} --revision {commit}",
        "transformers": (
            f"{env}from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}", revision="{commit}")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}", revision="{commit}")'
        ),
    }
    mirror = f"hubd mirror {repo_id}@{commit}{' --with-base' if base else ''} --from {origin}"
    if gguf is None:
        found["hubd"] = mirror
    elif base is None:
        found["llama-cpp-python"] = (
            f"{env}from llama_cpp import Llama\n\n"
            f'llm = Llama.from_pretrained(repo_id="{repo_id}", filename="{gguf}")'
        )
        found["hubd run"] = f'{mirror}\nhubd run {repo_id}@{commit} -p "Hello"'
    else:
        found["hubd run"] = f'{mirror}\nhubd run {base} --lora {repo_id}@{commit} -p "Hello"'
    return found


async def model(request: web.Request) -> Rendered:
    """GET /ui/models/{org}/{name}?rev=: one repo, one revision (its head by default)."""
    ctx = request.app[CONTEXT]
    repo_id = RepoRef.parse(f"{request.match_info['org']}/{request.match_info['name']}").repo_id
    index = await request.app[INDEXER].get()
    rev = request.query.get("rev")
    head = index.head(repo_id)
    wanted = rev or (head.commit if head else None)

    def read() -> dict[str, Any]:
        with ctx.catalog() as session_:
            repo = get_repo(session_, repo_id)
            revision = require_revision(session_, repo_id, wanted)
            if revision.state != RevisionState.VERIFIED:  # nothing of it is served, or audited
                raise RevisionNotFound(
                    f"{repo_id}@{revision.commit[:12]} did not verify",
                    hint=f"`hubd verify --repair {repo_id}` fetches what is damaged",
                )
            detail = repo_detail(repo)
            refs = [r.name for r in repo.refs if r.commit == revision.commit]
            chosen = revision_detail(revision, sorted(refs))
            card_text = revision.card.text if revision.card else None
        files = {f.path: f.sha256 for f in chosen.files}
        present = {f.sha256 for f in chosen.files if ctx.store.blob_path(f.sha256).exists()}
        report = audit(ctx, repo_id, chosen.commit)
        return {
            "detail": detail,
            "revision": chosen,
            "card": card_text,
            "present": present,
            "audit": report.revisions[0],
            "signing": signing(ctx, trusted_signers(ctx), repo_id, chosen.commit, files),
            "statements": _statements(ctx, repo_id, chosen.commit, files),
        }

    found = await asyncio.to_thread(read)
    revision, audited, signed = found["revision"], found["audit"], found["signing"]
    files = [
        {
            **f.model_dump(mode="json"),
            "state": (
                "failed"
                if revision.state != RevisionState.VERIFIED
                else "verified"
                if f.sha256 in found["present"]
                else "verified, on another node"
            ),
        }
        for f in revision.files
    ]
    origin = f"{request.scheme}://{request.host}"
    snippets = _snippets(
        origin,
        repo_id,
        revision.commit,
        [f.path for f in revision.files],
        ctx.settings.auth_required,
        revision.base_model if revision.is_adapter else None,
    )
    children = index.children.get(repo_id, [])
    lineage = graph(repo_id, audited.effective, children)
    entry = audited.to_json()
    data = {
        "repo": repo_id,
        "kind": found["detail"].kind,
        "revision": {
            **revision.model_dump(mode="json", exclude={"files"}),
            "files": files,
        },
        "revisions": [
            {
                "commit": r.commit,
                "refs": r.refs,
                "mirrored_at": r.mirrored_at.isoformat(),
                "state": str(r.state),
                "size": r.size,
            }
            for r in found["detail"].revisions
        ],
        "refs": found["detail"].refs,
        "license": {
            "class": entry["class"],
            "spdx": entry["spdx"],
            "license": entry["license"],
            "reason": entry["class_reason"],
            "declared": entry["declared"],
        },
        "lineage": entry["lineage"],
        "derived": [asdict(c) for c in children],
        "openness": {
            "verdict": entry["verdict"],
            "reasons": entry["verdict_reasons"],
            "mof": entry["mof"],
        },
        "signatures": _signing_json(signed),
        "statements": [s.to_json() for s in found["statements"]],
        "findings": entry["findings"],
        "decision": entry["decision"],
        "compliant": entry["compliant"],
        "formats": list(formats(f["path"] for f in files)),
        "snippets": snippets,
    }
    card_html = render_card(found["card"], repo_id, revision.commit) if found["card"] else None
    return Rendered("model.html", data, {"card_html": card_html, "graph": lineage})


def _signing_json(signed: Signing) -> dict[str, Any]:
    return {
        "state": signed.state,
        "signers": list(signed.signers),
        "untrusted": signed.untrusted,
        "invalid": list(signed.invalid),
    }


def _selection(request: web.Request, index: CatalogIndex) -> list[str]:
    repos = [RepoRef.parse(r).repo_id for r in request.query.getall("repo", [])]
    unknown = [r for r in repos if index.head(r) is None]
    if unknown:
        raise InvalidRequest(f"not in the catalog: {', '.join(unknown[:5])}")
    return repos


def _violation(r: RevisionAudit) -> dict[str, Any]:
    return {
        "repo": r.row.repo_id,
        "commit": r.row.commit,
        "class": str(r.effective.license.license_class),
        "decision": r.decision.to_json(),
        "critical": r.critical,
    }


async def dashboard(request: web.Request) -> Rendered:
    """GET /ui/audit?repo=…: revisions by license class and verdict, what the policy refuses,
    what no trusted key signed, and the reports and BOMs to download. The lists show their
    first SHOWN rows; the downloads hold every one."""
    index = await request.app[INDEXER].get()
    repos = _selection(request, index)
    report = index.selection(repos)
    brief = overview(report, index.signing) if repos else index.overview
    selection = urlencode([("repo", r) for r in repos])
    downloads = {
        label: f"{PREFIX}audit/report.{fmt}" + (f"?{selection}" if selection else "")
        for label, fmt in (
            ("HTML report", "html"),
            ("Markdown report", "md"),
            ("CycloneDX BOM", "cdx.json"),
            ("SPDX BOM", "spdx.json"),
        )
    }
    data = {
        "selection": repos,
        "generated_at": report.generated_at.isoformat(),
        "policy": report.policy,
        "summary": brief.summary,
        "violations": [_violation(r) for r in brief.violations[:SHOWN]],
        "violations_total": len(brief.violations),
        "unsigned": [
            {"repo": r.row.repo_id, "commit": r.row.commit, **_signing_json(signed)}
            for r, signed in brief.unsigned[:SHOWN]
        ],
        "unsigned_total": len(brief.unsigned),
        "downloads": downloads,
    }
    extra = {
        "class_chart": charts.bars(brief.summary["by_class"], "License class"),
        "verdict_chart": charts.bars(brief.summary["by_verdict"], "Openness verdict"),
    }
    return Rendered("audit.html", data, extra)


DOWNLOADS = {
    "html": ("text/html", "hubd-audit.html"),
    "md": ("text/markdown", "hubd-audit.md"),
    "cdx.json": ("application/vnd.cyclonedx+json", "hubd-aibom.cdx.json"),
    "spdx.json": ("application/spdx+json", "hubd-aibom.spdx.json"),
}


async def report_download(request: web.Request) -> web.Response:
    """GET /ui/audit/report.{html,md,cdx.json,spdx.json}?repo=…: the audit as a file."""
    fmt = request.match_info["fmt"]
    if fmt not in DOWNLOADS:
        raise web.HTTPNotFound()
    index = await request.app[INDEXER].get()
    report = index.selection(_selection(request, index))
    if fmt == "html":
        body = reports.html(report)
    elif fmt == "md":
        body = reports.markdown(report)
    else:
        doc = boms.cyclonedx(report) if fmt == "cdx.json" else boms.spdx(report)
        body = json.dumps(doc, indent=2)
    kind, name = DOWNLOADS[fmt]
    return web.Response(
        text=body,
        content_type=kind,
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def operations(request: web.Request) -> Rendered:
    """GET /ui/ops: jobs with their progress, the watch list, the nodes of the catalog and what
    the pull-through refused lately."""
    ctx = request.app[CONTEXT]

    def read() -> dict[str, Any]:
        with ctx.catalog() as session_:
            nodes = [
                {"name": n.name, "url": n.url, "last_seen": n.last_seen.isoformat()}
                for n in list_nodes(session_)
            ]
            refusals = [
                {
                    "repo": r.repo_id,
                    "commit": r.commit,
                    "rule": r.rule,
                    "message": r.message,
                    "node": r.node,
                    "refused_at": r.refused_at.isoformat(),
                }
                for r in recent_refusals(session_, REFUSALS_SHOWN)
            ]
        watches = [
            {
                "repo": w.repo,
                "every_seconds": w.every_seconds,
                "next_run_at": w.next_run_at.isoformat(),
                "last_job_id": w.last_job_id,
            }
            for w in list_watches(ctx)
        ]
        jobs = [j.to_json() for j in list_jobs(ctx)]
        return {"jobs": jobs, "watches": watches, "nodes": nodes, "refusals": refusals}

    return Rendered("ops.html", await asyncio.to_thread(read))


class MirrorForm(Closed):
    csrf: Annotated[str, StringConstraints(max_length=100)]
    repo: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class WatchForm(MirrorForm):
    every: Annotated[str, StringConstraints(min_length=2, max_length=10)]


async def form(request: web.Request, model: type[MirrorForm]) -> Any:
    """A form body, checked: its CSRF token first, then its fields."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("expected a form")
    fields = await request.post()
    session.check_csrf(request, str(fields.get(session.CSRF_FIELD, "")) or None)
    try:
        return model.model_validate({k: str(v) for k, v in fields.items()})
    except ValidationError as exc:
        raise InvalidRequest(f"invalid form: {problem(exc)}") from None


async def queue_mirror(request: web.Request) -> web.StreamResponse:
    """POST /ui/ops/mirror: queue a mirror job, as POST /api/hubd/jobs does (write scope)."""
    sent = await form(request, MirrorForm)
    session.require_write(request[session.SCOPE])
    ctx = request.app[CONTEXT]
    mirror_request = MirrorRequest.parse({"repo": sent.repo})
    await asyncio.to_thread(check_source, ctx, mirror_request.from_)
    await asyncio.to_thread(enqueue, ctx, mirror_request)
    return session.see_other(f"{PREFIX}ops")


async def watch_repo(request: web.Request) -> web.StreamResponse:
    """POST /ui/ops/watch: keep a repo in sync every so often (write scope)."""
    sent = await form(request, WatchForm)
    session.require_write(request[session.SCOPE])
    await asyncio.to_thread(add_watch, request.app[CONTEXT], sent.repo, parse_every(sent.every))
    return session.see_other(f"{PREFIX}ops")
