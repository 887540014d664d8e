"""The Hugging Face Hub API, served from the catalog and the store.

The per-repo routes huggingface_hub uses to download and browse (model info, tree, paths-info,
treesize, refs, commits, resolve) with the Hub's headers and error contract, so unmodified
clients and other hubd nodes pull from a hubd node as they would from huggingface.co
(docs/hub-api.md lists what is served and what is not). Paths are parsed from the raw URL (a
revision may hold an encoded '/'), and every piece is validated before it touches the catalog
or the disk. A file whose blob only another node of a shared catalog holds is fetched from
that node first (hubd.cluster.locations). With ``[proxy] enabled`` what the catalog lacks is
asked of the pull-through instead of answered 404 (:data:`PROXY`, hubd.proxy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import posixpath
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, get_args
from urllib.parse import parse_qsl, unquote, urlencode

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from huggingface_hub.hf_api import ExpandModelProperty_T
from pydantic import Field, StrictBool, StrictStr, ValidationError
from sqlalchemy import select

from ..catalog.models import File, RefKind, Revision, RevisionState
from ..catalog.revisions import (
    children_count,
    commit_for,
    file_digests,
    find_revision,
    first_mirrored,
    history,
    ref_names,
    repo_exists,
    repo_refs,
    verified_file,
)
from ..cluster.locations import BlobFetches
from ..context import Context
from ..errors import (
    AccessDenied,
    EntryNotFound,
    HubdError,
    InvalidRequest,
    RangeNotSatisfiable,
    RepoNotFound,
    RevisionNotFound,
)
from ..hashes import lfs_pointer
from ..model import gguf, safetensors
from ..proxy.pull import PullThrough
from ..refs import RepoRef, check_revision, is_commit, is_sha256, safe_relpath
from ..store.s3 import S3Store
from ..validation import Closed, problem
from .answers import Answers
from .objects import object_response

CONTEXT = web.AppKey("ctx", Context)
SERVED = web.AppKey("served", dict[str, int])
FETCHES = web.AppKey("fetches", BlobFetches)
PROXY = web.AppKey("proxy", PullThrough)  # set with [proxy] enabled (and not offline)
ANSWERS = web.AppKey("answers", Answers)  # model info kept per catalog version
PAGE = 1000
# A non-blocking sendfile copies as much as the socket buffer takes, on the event loop's
# thread: with loopback's autotuned buffers (MiBs) 32 downloads starve every other request for
# seconds. A fixed buffer bounds each call, as nginx's sendfile_max_chunk does.
SEND_BUFFER = 256 * 1024
COMMITS_PAGE = 50  # the Hub's page of commits
MAX_QUERY = 2048
MAX_PATHS = 1000  # paths one paths-info request may ask about
MAX_BODY = 256 * 1024  # bytes of a paths-info body
CONFIG_LIMIT = 1024 * 1024  # bytes of a config.json (or tokenizer's) model info reads
TOKENIZER_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template")
# Refs recorded before hubd asked sources for their kind (or from sources without a refs API)
# are listed by name: version-like names (v1.0, 2.1.0-rc1) as tags, the rest as branches.
TAG_NAME = re.compile(r"v?[0-9]+(?:\.[0-9]+)+(?:[-+._A-Za-z0-9]*)")
# Hub repo routes, where a 401 says RepoNotFound as the Hub's does (clients map it so).
REPO_ROUTE = re.compile(r"/api/models/[^/]+/[^/]+(?:/.*)?|/[^/]+/[^/]+/resolve/.*")
# One range, strictly as RFC 9110 spells it: no spaces, no lists, ASCII digits of sane length.
BYTE_RANGE = re.compile(r"bytes=(?:([0-9]{1,19})-([0-9]{0,19})|-([0-9]{1,19}))")
log = logging.getLogger("hubd.server")


def _segments(request: web.Request, skip: int) -> list[str]:
    raw = request.raw_path.partition("?")[0]
    if len(request.query_string) > MAX_QUERY:
        raise InvalidRequest("query string too long")
    parts = [unquote(p) for p in raw.split("/")[1:]]
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts[: skip + 3]):
        raise InvalidRequest(f"malformed path {raw!r}")
    return parts[skip:]


def _repo(org: str, name: str) -> str:
    return RepoRef.parse(f"{org}/{name}").repo_id


def revision_of(ctx: Context, repo_id: str, rev: str | None) -> tuple[Revision, list[str]]:
    """(revision with files, its ref names), or the Hub's RepoNotFound / RevisionNotFound."""
    if rev is not None:
        check_revision(rev)
    with ctx.catalog() as session:
        revision = find_revision(session, repo_id, rev)
        if revision is None or revision.state != RevisionState.VERIFIED:
            if not repo_exists(session, repo_id):
                raise RepoNotFound(f"Repository {repo_id} not found")
            raise RevisionNotFound(f"Revision {rev!r} not found in {repo_id}")
        return revision, ref_names(session, revision)


async def _revision(
    request: web.Request, repo_id: str, rev: str | None
) -> tuple[Revision, list[str]]:
    """:func:`revision_of`; with the pull-through on, what the catalog lacks comes from
    upstream (hubd.proxy), vetted, as a revision not yet verified."""
    proxy = request.app.get(PROXY)
    if proxy is None:
        return await asyncio.to_thread(revision_of, request.app[CONTEXT], repo_id, rev)
    return await proxy.revision(repo_id, None if rev is None else check_revision(rev))


def _file_of(ctx: Context, repo_id: str, rev: str, path: str) -> tuple[str, File]:
    """(commit, file) for a download in two small queries; the Hub's errors otherwise."""
    with ctx.catalog() as session:
        commit = commit_for(session, repo_id, rev)
        match = verified_file(session, repo_id, commit, path) if commit else None
        if match is not None and commit is not None:
            return commit, match
    revision_of(ctx, repo_id, rev)  # raises RepoNotFound / RevisionNotFound if that is why
    raise EntryNotFound(f"{path} not found in {repo_id}@{commit}")


def _sibling(f: File) -> dict[str, Any]:
    entry: dict[str, Any] = {"rfilename": f.path, "size": f.size, "blobId": f.git_oid}
    if f.lfs:
        entry["lfs"] = {
            "sha256": f.sha256,
            "size": f.size,
            "pointerSize": len(lfs_pointer(f.sha256, f.size)),
        }
    return entry


def _iso(when: datetime) -> str:
    """A time as the Hub writes it: UTC, milliseconds, ``Z``."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def base_models(revision: Revision) -> dict[str, Any] | None:
    """The Hub's ``baseModels`` from the lineage hubd recorded: relation and base repos."""
    card = revision.card
    names = (card.base_model if card else []) or (
        [revision.base_model] if revision.base_model else []
    )
    if not names:
        return None
    relation = card.base_model_relation if card and card.base_model_relation else None
    relation = relation or ("adapter" if revision.is_adapter else "finetune")
    return {"relation": relation, "models": [{"id": name} for name in names]}


# The Hub's expand properties, as the client library names them; hubd fills those below and
# safetensors (parameter counts from the headers) and lacks the rest (downloads, likes: it does
# not know them; gguf), as the Hub omits what a repo does not have.
HUB_EXPAND = frozenset(get_args(ExpandModelProperty_T))


def model_info(
    revision: Revision,
    repo_id: str,
    created: datetime | None = None,
    children: int = 0,
    expand: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The Hub's model info; ``createdAt`` is when hubd mirrored the repo's first revision it
    holds (``created``), ``lastModified`` when it mirrored this one. With ``expand``: ``_id``,
    ``id`` and only the fields asked for, as the Hub answers."""
    card = revision.card
    data = card.data if card else {}
    info: dict[str, Any] = {
        "_id": revision.commit[:24],
        "id": repo_id,
        "modelId": repo_id,
        "author": repo_id.split("/", 1)[0],
        "sha": revision.commit,
        "lastModified": _iso(revision.mirrored_at),
        "createdAt": _iso(created or revision.mirrored_at),
        "private": False,
        "disabled": False,
        "gated": False,
        "tags": card.tags_for_hub() if card else [],
        "cardData": data,
        "siblings": [_sibling(f) for f in revision.files],
    }
    if card and card.pipeline_tag:
        info["pipeline_tag"] = card.pipeline_tag
    if isinstance(data.get("library_name"), str):
        info["library_name"] = data["library_name"]
    if not expand:
        return info
    extra = {"baseModels": base_models(revision), "childrenModelCount": children}
    every = {**info, **extra}
    return {"_id": info["_id"], "id": repo_id} | {k: every[k] for k in expand if k in every}


def _expand_fields(request: web.Request) -> frozenset[str]:
    """``expand`` / ``expand[]`` of a model info request; 400 for what is no model property."""
    asked = frozenset(request.query.getall("expand", []) + request.query.getall("expand[]", []))
    unknown = sorted(asked - HUB_EXPAND)
    if unknown:
        raise InvalidRequest(f"cannot expand {', '.join(unknown)[:200]}: not a model property")
    return asked


def _info_of(
    ctx: Context, revision: Revision, repo_id: str, expand: frozenset[str]
) -> dict[str, Any]:
    with ctx.catalog() as session:
        created = first_mirrored(session, revision.repo_pk) if revision.repo_pk else None
        children = children_count(session, repo_id) if "childrenModelCount" in expand else 0
    info = model_info(revision, repo_id, created, children, expand)
    if revision.state != RevisionState.VERIFIED:  # a pull-through's: its blobs may be upstream
        return info
    if not expand or "config" in expand:
        config = config_summary(ctx, revision)
        if config is not None:
            info["config"] = config
    if "safetensors" in expand:
        counted = parameter_counts(ctx, revision)
        if counted is not None:
            info["safetensors"] = counted
    if "gguf" in expand:
        described = gguf_summary(ctx, revision)
        if described is not None:
            info["gguf"] = described
    return info


def config_summary(ctx: Context, revision: Revision) -> dict[str, Any] | None:
    """The Hub's ``config``: from config.json the architectures, model type and quantization,
    the special tokens and chat template of tokenizer_config.json, an adapter's base and task
    from adapter_config.json (as ``peft``); None for a repo with none of them. Blocking."""
    config = _small_json(ctx, revision, "config.json")
    tokenizer = _small_json(ctx, revision, "tokenizer_config.json")
    adapter = _small_json(ctx, revision, "adapter_config.json")
    if config is None and adapter is None:
        return None
    summary: dict[str, Any] = {}
    if config is not None:
        architectures = config.get("architectures")
        if isinstance(architectures, list) and all(isinstance(a, str) for a in architectures):
            summary["architectures"] = architectures
        for key, kind in (("model_type", str), ("quantization_config", dict)):
            if isinstance(config.get(key), kind):
                summary[key] = config[key]
    summary["tokenizer_config"] = {
        key: value
        for key, value in (tokenizer or {}).items()
        if key in TOKENIZER_KEYS and isinstance(value, str | dict)
    }
    if adapter is not None:
        summary["peft"] = {
            key: adapter[key]
            for key in ("base_model_name_or_path", "task_type")
            if isinstance(adapter.get(key), str)
        }
    return summary


def _small_json(ctx: Context, revision: Revision, path: str) -> dict[str, Any] | None:
    """A JSON object file of the revision of at most CONFIG_LIMIT bytes from this node's store;
    None when it is missing, larger, held by another node only, or no JSON object."""
    found = next((f for f in revision.files if f.path == path), None)
    if found is None or found.size > CONFIG_LIMIT:
        return None
    try:
        with open_blob(ctx, found.sha256, found.size) as blob:
            value = json.loads(blob.read())
    except (EntryNotFound, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def gguf_summary(ctx: Context, revision: Revision) -> dict[str, Any] | None:
    """The Hub's ``gguf`` expand from the first GGUF model file by name (a repo's quantizations
    share one architecture; of a split file, the first part's tensors): parameters,
    architecture, context length; None for a repo without one. Blocking.

    Read through the descriptor :func:`open_blob` checked (``/proc/self/fd``), so what the
    GGUF reader maps is the verified blob, not whatever a path leads to by then.
    """
    parts = sorted((f for f in revision.files if f.path.endswith(".gguf")), key=lambda f: f.path)
    for f in parts:
        with open_blob(ctx, f.sha256, f.size) as blob:
            info = gguf.inspect(Path(f"/proc/self/fd/{blob.fileno()}"), f.path)
        if info.kind == "model":
            described: dict[str, Any] = {"total": info.parameters}
            if info.architecture:
                described["architecture"] = info.architecture
            if info.context_length is not None:
                described["context_length"] = info.context_length
            return described
    return None


def parameter_counts(ctx: Context, revision: Revision) -> dict[str, Any] | None:
    """The Hub's ``safetensors`` expand: parameters per dtype over every .safetensors file,
    from their headers in the verified store (blocking); None for a repo without any."""
    per_dtype: dict[str, int] = {}
    shards = [f for f in revision.files if f.path.endswith(".safetensors")]
    for f in shards:
        with open_blob(ctx, f.sha256, f.size) as blob:
            header = safetensors.read_header(blob, f.size, f.path)
        for dtype, count in safetensors.parameters(header, f.path).items():
            per_dtype[dtype] = per_dtype.get(dtype, 0) + count
    return {"parameters": per_dtype, "total": sum(per_dtype.values())} if shards else None


def last_commits(ctx: Context, revision: Revision, paths: set[str]) -> dict[str, dict[str, str]]:
    """``lastCommit`` of these files and directories of ``revision``, as far as hubd can tell.

    A file's is the oldest revision hubd holds from which on it kept its content, walking back
    through the revisions mirrored before this one (:func:`history`); a directory's is the
    newest of its files'. The title says where hubd mirrored that revision from: hubd keeps
    no commit titles, and the date is when it was mirrored.
    """

    def wanted(path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:depth]) in paths for depth in range(1, len(parts) + 1))

    files = [f for f in revision.files if wanted(f.path)]
    with ctx.catalog() as session:
        revisions = history(session, revision) or [revision]  # a pull-through's: only itself
        by_pk = file_digests(session, [r.id for r in revisions], [f.path for f in files])
    digests = [by_pk[r.id] for r in revisions]
    found: dict[str, int] = {}
    for f in files:
        at = 0
        while at + 1 < len(revisions) and digests[at + 1].get(f.path) == f.sha256:
            at += 1
        found[f.path] = at
        parts = f.path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            found[directory] = min(found.get(directory, at), at)
    return {path: _last_commit(revisions[at]) for path, at in found.items() if path in paths}


def _last_commit(revision: Revision) -> dict[str, str]:
    """A commit pushed to this node keeps its title; a mirrored one says where it came from."""
    title = (revision.message or "").split("\n", 1)[0]
    return {
        "id": revision.commit,
        "title": title or f"Mirrored from {revision.source_endpoint}",
        "date": _iso(revision.mirrored_at),
    }


def _directory(path: str) -> dict[str, Any]:
    return {"type": "directory", "oid": "", "size": 0, "path": path}


def _file_entry(f: File) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": f.git_oid or "", "size": f.size, "path": f.path}
    if f.lfs:
        entry["lfs"] = {
            "oid": f.sha256,
            "size": f.size,
            "pointerSize": len(lfs_pointer(f.sha256, f.size)),
        }
    return entry


def _tree(revision: Revision, base: str, recursive: bool) -> list[dict[str, Any]]:
    prefix = f"{base}/" if base else ""
    entries: dict[str, dict[str, Any]] = {}
    for f in revision.files:
        if not f.path.startswith(prefix):
            continue
        rest = f.path[len(prefix) :]
        if "/" in rest and not recursive:
            directory = prefix + rest.split("/", 1)[0]
            entries.setdefault(directory, _directory(directory))
            continue
        parts = rest.split("/")
        for depth in range(1, len(parts)):
            directory = prefix + "/".join(parts[:depth])
            entries.setdefault(directory, _directory(directory))
        entries[f.path] = _file_entry(f)
    if base and not entries:
        raise EntryNotFound(f"{base} not found in this revision")
    return [entries[k] for k in sorted(entries)]


def _with_last_commits(
    ctx: Context, revision: Revision, entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    last = last_commits(ctx, revision, {e["path"] for e in entries})
    return [{**e, "lastCommit": last[e["path"]]} if e["path"] in last else e for e in entries]


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true")


def _page(
    request: web.Request, entries: list[Any], size: int, key: str
) -> tuple[list[Any], str | None]:
    """One page of ``entries`` from the offset in query ``key``, and the ``Link`` to the next
    as the Hub sends it (None on the last page)."""
    try:
        start = int(request.query.get(key, "0"))
    except ValueError:
        raise InvalidRequest(f"bad {key}") from None
    if start < 0:
        raise InvalidRequest(f"bad {key}")
    if start + size >= len(entries):
        return entries[start : start + size], None
    query = {**request.query, key: str(start + size)}
    url = request.url.with_query(None)
    return entries[start : start + size], f'<{url}?{urlencode(query)}>; rel="next"'


def _paged(page: list[Any], link: str | None) -> web.Response:
    response = web.json_response(page)
    if link is not None:
        response.headers["Link"] = link
    return response


def refs_of(
    ctx: Context, repo_id: str, pulled: list[tuple[str, str]] | None = None
) -> dict[str, list[dict[str, str]]]:
    """The Hub's refs answer: the refs hubd recorded (or the (name, commit) pairs the
    pull-through resolved upstream for a repo the catalog lacks: ``pulled``), as branches and
    tags as their source said or as made on this node, by name (:data:`TAG_NAME`) where
    neither tells; hubd converts nothing."""
    refs: list[tuple[str, str, RefKind | None]] = [(n, c, None) for n, c in pulled or []]
    if pulled is None:
        with ctx.catalog() as session:
            refs = [(ref.name, ref.commit, ref.kind) for ref in repo_refs(session, repo_id)]
            if not refs and not repo_exists(session, repo_id):
                raise RepoNotFound(f"Repository {repo_id} not found")
    answer: dict[str, list[dict[str, str]]] = {"branches": [], "tags": [], "converts": []}
    for name, commit, recorded in refs:
        tag = recorded == RefKind.TAG if recorded else bool(TAG_NAME.fullmatch(name))
        kind = "tags" if tag else "branches"
        full = f"refs/{'tags' if kind == 'tags' else 'heads'}/{name}"
        answer[kind].append({"name": name, "ref": full, "targetCommit": commit})
    return answer


def commits_of(ctx: Context, repo_id: str, rev: str) -> list[dict[str, Any]]:
    """The Hub's commit list of ``rev``, newest first: a commit pushed to this node and its
    parents with their titles, messages and authors (the tokens' names); for a mirrored ref the
    revisions hubd holds that it recorded the ref at, for a mirrored commit the repo's revisions
    mirrored no later (a mirror keeps no git parents), titled by where each came from, dated
    when."""
    revision, _ = revision_of(ctx, repo_id, rev)
    with ctx.catalog() as session:
        revisions = history(session, revision, None if is_commit(rev) else rev)
    return [
        {
            **_last_commit(r),
            "message": (r.message or "").partition("\n\n")[2].rstrip("\n"),
            "authors": [{"user": r.author}] if r.author else [],
        }
        for r in revisions
    ]


def tree_size(revision: Revision, base: str) -> dict[str, Any]:
    """``treesize``: the bytes of the files under ``base`` (the whole revision for none)."""
    prefix = f"{base}/" if base else ""
    sizes = [
        f.size for f in revision.files if not base or f.path == base or f.path.startswith(prefix)
    ]
    if base and not sizes:
        raise EntryNotFound(f"{base} not found in this revision")
    return {"path": base or "/", "size": sum(sizes)}


async def _model_info(request: web.Request, repo_id: str, rev: str | None) -> web.Response:
    """The model info, kept while the catalog stays as it was (hubd.server.answers)."""
    ctx, expand = request.app[CONTEXT], _expand_fields(request)

    async def build() -> tuple[bytes, bool]:
        revision, _ = await _revision(request, repo_id, rev)
        info = await asyncio.to_thread(_info_of, ctx, revision, repo_id, expand)
        keep = revision.state == RevisionState.VERIFIED and PROXY not in request.app
        return json.dumps(info).encode(), keep

    body = await request.app[ANSWERS].answer((repo_id, rev, expand), build)
    return web.Response(body=body, content_type="application/json")


async def api_models(request: web.Request) -> web.Response:
    """/api/models/{org}/{name}[/revision/{rev} | /tree/{rev}[/{path}] | /refs |
    /commits/{rev} | /treesize/{rev}[/{path}] | /safetensors-metadata/{path}]"""
    ctx = request.app[CONTEXT]
    parts = _segments(request, 2)
    if len(parts) < 2:
        raise InvalidRequest("expected /api/models/{org}/{name}")
    repo_id = _repo(parts[0], parts[1])
    tail = parts[2:]
    if not tail or (tail[0] == "revision" and len(tail) == 2):
        return await _model_info(request, repo_id, tail[1] if tail else None)
    if tail == ["refs"]:
        proxy = request.app.get(PROXY)
        pulled = None if proxy is None else await proxy.refs(repo_id)
        refs: dict[str, Any] = await asyncio.to_thread(refs_of, ctx, repo_id, pulled)
        if _truthy(request.query.get("include_prs")):
            refs["pullRequests"] = []  # hubd mirrors no pull requests
        return web.json_response(refs)
    if tail[0] == "commits" and len(tail) == 2:
        commits = await asyncio.to_thread(commits_of, ctx, repo_id, tail[1])
        try:
            size = min(max(int(request.query.get("limit", COMMITS_PAGE)), 1), COMMITS_PAGE)
        except ValueError:
            raise InvalidRequest("limit must be a number") from None
        response = _paged(*_page(request, commits, size, "p"))
        response.headers["X-Total-Count"] = str(len(commits))
        return response
    if tail[0] in ("tree", "treesize") and len(tail) >= 2:
        base = "/".join(tail[2:])
        if base:
            safe_relpath(base)
        revision, _ = await _revision(request, repo_id, tail[1])
        if tail[0] == "treesize":
            return web.json_response(tree_size(revision, base))
        entries = _tree(revision, base, _truthy(request.query.get("recursive")))
        page, link = _page(request, entries, PAGE, "cursor")
        if _truthy(request.query.get("expand")):  # for this page only
            page = await asyncio.to_thread(_with_last_commits, ctx, revision, page)
        return _paged(page, link)
    if tail[0] == "safetensors-metadata" and len(tail) >= 2:
        path = safe_relpath("/".join(tail[1:]))
        return web.json_response(await asyncio.to_thread(safetensors_metadata, ctx, repo_id, path))
    raise EntryNotFound("no such API route")


def safetensors_metadata(ctx: Context, repo_id: str, path: str) -> dict[str, Any]:
    """GET .../safetensors-metadata/{index}: the index (without its weight_map) and every shard's
    header, from main, in one answer (huggingface_hub's get_sharded_safetensors_metadata).

    Blocking. Read from this node's verified store; a blob only another node holds is missing.
    """
    revision, _ = revision_of(ctx, repo_id, None)
    files = {f.path: f for f in revision.files}

    def listed(name: str) -> File:
        if name not in files:
            raise EntryNotFound(f"{name} not found in {repo_id}@{revision.commit}")
        return files[name]

    index_file = listed(path)
    with open_blob(ctx, index_file.sha256, index_file.size) as blob:
        index = safetensors.read_index(blob, index_file.size, path)
    base = posixpath.dirname(path)
    headers = {}
    for shard in sorted(set(index.weight_map.values())):
        stored = listed(safe_relpath(posixpath.join(base, shard)))
        with open_blob(ctx, stored.sha256, stored.size) as blob:
            headers[shard] = safetensors.read_header(blob, stored.size, shard)
    body = index.model_dump(mode="json", exclude={"weight_map"}, exclude_none=True)
    return {"index": body, "headers": headers}


class PathsInfoBody(Closed):
    """A paths-info body, as JSON or as the form huggingface_hub posts (``paths`` repeated)."""

    paths: Annotated[list[StrictStr], Field(max_length=MAX_PATHS)]
    expand: StrictBool = False


async def _paths_body(request: web.Request) -> PathsInfoBody:
    """The body, at most :data:`MAX_BODY` bytes, checked before anything is looked up."""
    if (request.content_length or 0) > MAX_BODY:
        raise InvalidRequest(f"paths-info bodies are at most {MAX_BODY} bytes")
    raw = b""
    while len(raw) <= MAX_BODY and (chunk := await request.content.read(MAX_BODY + 1 - len(raw))):
        raw += chunk  # read() answers what has arrived, not all that was asked
    if len(raw) > MAX_BODY:
        raise InvalidRequest(f"paths-info bodies are at most {MAX_BODY} bytes")
    try:
        text = raw.decode()
        if request.content_type == "application/json":
            body: Any = json.loads(text)
        else:
            fields = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_PATHS + 2)
            body = {"paths": [v for k, v in fields if k == "paths"]}
            for key, value in fields:
                if key != "paths":
                    body[key] = _truthy(value) if key == "expand" else value
        parsed = PathsInfoBody.model_validate(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, ValidationError):
            raise InvalidRequest(f"bad paths-info body: {problem(exc)}") from None
        raise InvalidRequest('expected {"paths": [...], "expand": bool} or its form') from None
    for path in parsed.paths:
        safe_relpath(path)
    return parsed


async def paths_info(request: web.Request) -> web.Response:
    """POST /api/models/{org}/{name}/paths-info/{rev}: tree entries of the paths asked about.

    A file's entry, or a directory's if the path is one the revision's files imply; paths the
    revision lacks are left out, as the Hub does. ``expand`` adds ``lastCommit``.
    """
    ctx = request.app[CONTEXT]
    parts = _segments(request, 2)
    if len(parts) != 4 or parts[2] != "paths-info":
        raise EntryNotFound("no such API route")
    repo_id = _repo(parts[0], parts[1])
    body = await _paths_body(request)
    revision, _ = await _revision(request, repo_id, parts[3])
    files = {f.path: f for f in revision.files}
    directories = {"/".join(p.split("/")[:d]) for p in files for d in range(1, p.count("/") + 1)}
    entries = []
    for path in dict.fromkeys(body.paths):
        if path in files:
            entries.append(_file_entry(files[path]))
        elif path in directories:
            entries.append(_directory(path))
    if body.expand:
        entries = await asyncio.to_thread(_with_last_commits, ctx, revision, entries)
    return web.json_response(entries)


def wire_code(request: web.BaseRequest, exc: HubdError) -> str:
    """The ``X-Error-Code`` of ``exc``: a request without a token refused on a repo route says
    RepoNotFound, as the Hub's 401 does for what the caller may not see, so that clients
    report a missing repo (``repo_exists`` is False) rather than fail on a code they do not
    know. A token that was sent and refused keeps AccessDenied: that is the caller's to fix."""
    hidden = type(exc) is AccessDenied and "Authorization" not in request.headers
    if hidden and REPO_ROUTE.fullmatch(request.path):
        return "RepoNotFound"
    return exc.code


async def resolve(request: web.Request) -> web.StreamResponse:
    """HEAD/GET /{org}/{name}/resolve/{rev}/{path}: the bytes, with the Hub's headers."""
    ctx = request.app[CONTEXT]
    parts = _segments(request, 0)
    if len(parts) < 5 or parts[2] != "resolve":
        raise EntryNotFound("no such route")
    repo_id = _repo(parts[0], parts[1])
    path = safe_relpath("/".join(parts[4:]))
    rev, proxy = check_revision(parts[3]), request.app.get(PROXY)
    if proxy is None:
        commit, match = await asyncio.to_thread(_file_of, ctx, repo_id, rev, path)
    else:
        pulled = await proxy.file(repo_id, rev, path)
        commit, match = pulled.commit, pulled.file
        if not pulled.stored:  # the bytes are still upstream: streamed as they are verified
            span = byte_range(request.headers.get("Range"), match.size)
            headers = _file_headers(commit, match, path)
            return await proxy.respond(request, pulled, span, headers, request.app[SERVED])
    if ctx.store.local_blobs and not ctx.store.has_blob(match.sha256, match.size):  # a sibling's
        await request.app[FETCHES].ensure(match.sha256, match.size, f"{repo_id}/{path}")
    headers = _file_headers(commit, match, path)
    return await _send_blob(request, match.sha256, match.size, headers)


def _file_headers(commit: str, match: File, path: str) -> dict[str, str]:
    """The Hub's headers of a download."""
    etag = f'"{match.sha256 if match.lfs else match.git_oid or match.sha256}"'
    return {
        "ETag": etag,  # the content's, as the Hub's, never one of the file's mtime
        "X-Repo-Commit": commit,
        "X-Linked-Etag": etag,
        "X-Linked-Size": str(match.size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
    }


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(offset, count) a Range header asks of a ``size``-byte blob; None for the whole blob."""
    if header is None:
        return None
    match = BYTE_RANGE.fullmatch(header)
    if match is None:
        raise RangeNotSatisfiable(
            f"unsupported Range {header[:100]!r}: expected bytes=N-[M] or bytes=-N", size
        )
    first, last, suffix = match.groups()
    if suffix is not None:
        start, stop = max(0, size - int(suffix)), size
    else:
        start, stop = int(first), size if not last else min(int(last) + 1, size)
        if last and int(last) < start:
            raise RangeNotSatisfiable(f"Range {header!r} ends before it starts", size)
    if start >= stop:
        raise RangeNotSatisfiable(f"Range {header!r} selects none of the {size} bytes", size)
    return start, stop - start


def open_blob(ctx: Context, sha256: str, size: int) -> BinaryIO:
    """The stored blob as a regular file of ``size`` bytes, opened without following symlinks.

    What a traversal left at a blob path (a symlink to the node key, a FIFO, a directory) is
    refused as missing, never served; ``hubd verify --repair`` is the way to mend it.
    """
    try:
        fd = ctx.store.open_blob(sha256)
    except FileNotFoundError:
        raise EntryNotFound(f"blob {sha256} is not in this node's store") from None
    except OSError as exc:  # ELOOP: a symlink; ENOTDIR, EINVAL: something else where it goes
        log.warning("refusing to serve blob %s: %s", sha256, exc.strerror)
        raise EntryNotFound(f"blob {sha256} is not in this node's store") from None
    if os.fstat(fd).st_size != size:
        os.close(fd)
        log.warning("refusing to serve blob %s: not of its %d bytes", sha256, size)
        raise EntryNotFound(f"blob {sha256} is not in this node's store")
    return os.fdopen(fd, "rb")


class BlobResponse(web.StreamResponse):
    """An open blob, whole or one range, through sendfile; closed once sent.

    Unlike FileResponse it never reopens a path (the checks :func:`open_blob` made hold for
    what is sent) and never looks for a compressed sibling of it. What a GET sent is counted
    in hubd_bytes_served_total.
    """

    def __init__(
        self,
        blob: BinaryIO,
        size: int,
        span: tuple[int, int] | None,
        headers: dict[str, str],
        served: dict[str, int],
    ) -> None:
        super().__init__(status=200 if span is None else 206, headers=headers)
        self._blob = blob
        self._served = served
        self._offset, self._count = span or (0, size)
        if span is not None:
            last = self._offset + self._count - 1
            self.headers["Content-Range"] = f"bytes {self._offset}-{last}/{size}"
        self.content_type = "application/octet-stream"
        self.content_length = self._count

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0:
                return writer
            if request.transport is None:
                raise ConnectionResetError("connection lost")
            sock = request.transport.get_extra_info("socket")
            if sock is not None:  # each sendfile call then moves at most this much: see SEND_BUFFER
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
            loop = asyncio.get_running_loop()
            await loop.sendfile(request.transport, self._blob, self._offset, self._count)
            self._served["bytes"] += self._count
            await super().write_eof()
            return writer
        finally:
            self._blob.close()


async def _send_blob(
    request: web.Request, sha256: str, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """A stored blob (Range included) after the Range and the file itself are checked."""
    span = byte_range(request.headers.get("Range"), size)
    store = request.app[CONTEXT].store
    if isinstance(store, S3Store):
        return await object_response(
            request, store, sha256, size, span, headers, request.app[SERVED]
        )
    blob = await asyncio.to_thread(open_blob, request.app[CONTEXT], sha256, size)
    return BlobResponse(blob, size, span, headers, request.app[SERVED])


def _catalog_size(ctx: Context, sha256: str) -> int | None:
    """The size the catalog records for a blob of a verified revision; None if it knows none."""
    with ctx.catalog() as session:
        return session.scalar(
            select(File.size)
            .join(Revision)
            .where(File.sha256 == sha256, Revision.state == RevisionState.VERIFIED)
            .limit(1)
        )


async def blob(request: web.Request) -> web.StreamResponse:
    """HEAD/GET /api/hubd/blobs/{sha256}: a blob of this node's store, for a node that lacks it.

    Only blobs the catalog records for a verified revision, of the size it records: whatever
    else sits under blobs/ (a failed mirror's leftovers) is not this node's to hand out. Only
    what this store holds: a node never asks a third one on another's behalf, so two nodes
    that both lack a blob cannot send each other round in circles.
    """
    sha256 = request.match_info["sha256"]
    if not is_sha256(sha256):
        raise InvalidRequest("expected /api/hubd/blobs/{sha256} with 64 lowercase hex digits")
    size = await asyncio.to_thread(_catalog_size, request.app[CONTEXT], sha256)
    if size is None:
        raise EntryNotFound(f"blob {sha256} is not in this node's store")
    headers = {"ETag": f'"{sha256}"', "X-Linked-Size": str(size), "Accept-Ranges": "bytes"}
    return await _send_blob(request, sha256, size, headers)
