"""The Hub's write API, so `hf upload`, `hf repos create` and HfApi publish to a hubd node.

create repo, preupload, the Git LFS batch API (basic and multipart transfers: upload and verify
actions that point at this node), the uploads themselves (ops.parts stages the parts), the
ndjson commit, branches and tags (docs/hub-api.md). Every call needs a write token whose repo
globs cover the repo. An LFS upload streams through the store's hashing writer: a body whose
sha256 or size is not what the batch declared is a 400 and leaves nothing. Upload URLs are
signed by this daemon (the client sends them no token) and expire. Xet is refused with the
message telling the user to set HF_HUB_DISABLE_XET=1.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import Field, StrictInt, StrictStr, ValidationError

from ..catalog.models import RefKind
from ..catalog.nodes import fleet_secret
from ..catalog.revisions import find_revision, repo_exists
from ..cluster.tokens import TokenInfo, find_token
from ..errors import (
    AccessDenied,
    Conflict,
    EntryNotFound,
    Forbidden,
    HashMismatch,
    InvalidRequest,
    RepoNotFound,
    SizeMismatch,
)
from ..ops import commit as commits
from ..ops import parts
from ..ops.publish import is_lfs
from ..refs import RepoRef, check_revision
from ..store import Expected
from ..threads import enter_in_thread
from ..validation import FilePath, Open, Sha256, Size, problem
from .account import bearer
from .hfapi import CONTEXT

M = TypeVar("M", bound=Open)
UPLOAD_KEY = web.AppKey("upload_key", bytes)
SIGNED_PREFIX = "/api/hubd/lfs/"  # upload URLs: signed, so the auth middleware lets them by
UPLOAD_TTL = 3600  # seconds an upload URL stays valid
MAX_LINE = 16 * 1024 * 1024  # one ndjson line: a regular file of up to ~12 MiB, base64
MAX_COMMIT = 256 * 1024 * 1024  # a whole commit body; LFS files go through the batch API
MAX_OPERATIONS = 100_000
XET = (
    "hubd does not speak the Xet protocol: set HF_HUB_DISABLE_XET=1 so huggingface_hub uploads "
    "through Git LFS"
)


class CreateRepoBody(Open):
    """What create_repo posts; the Hub's other keys (visibility, space options) are kept."""

    name: StrictStr
    organization: StrictStr | None = None
    type: StrictStr = "model"


class PreuploadFile(Open):
    path: FilePath
    size: Size
    sample: StrictStr = ""


class PreuploadBody(Open):
    """What preupload asks about: the files of a coming commit, by path and size."""

    files: Annotated[list[PreuploadFile], Field(max_length=1000)]


class LfsObject(Open):
    oid: Sha256
    size: Size


class LfsBatchBody(Open):
    """A Git LFS batch request; hubd serves uploads by sha256 only."""

    operation: Literal["upload", "download"]
    objects: Annotated[list[LfsObject], Field(max_length=1000)]
    transfers: tuple[StrictStr, ...] = ("basic",)
    hash_algo: Literal["sha256"] = "sha256"


class CommitHeader(Open):
    """The first line of an ndjson commit: its message and the head it was based on."""

    summary: StrictStr = Field(min_length=1, max_length=10_000)
    description: StrictStr = Field(default="", max_length=100_000)
    parentCommit: Annotated[StrictStr, Field(pattern="^[0-9a-f]{40}$")] | None = None


class RegularValue(Open):
    path: FilePath
    content: StrictStr
    encoding: Literal["base64"] = "base64"


class LfsValue(Open):
    path: FilePath
    oid: Sha256
    size: Size
    algo: Literal["sha256"] = "sha256"


class DeletedValue(Open):
    path: FilePath


class BranchBody(Open):
    startingPoint: StrictStr | None = None


class TagBody(Open):
    tag: StrictStr
    message: StrictStr | None = None


def _repo(request: web.Request) -> str:
    return RepoRef.parse(f"{request.match_info['org']}/{request.match_info['name']}").repo_id


async def writer_token(request: web.Request, repo_id: str) -> TokenInfo:
    """The caller's token, if it may write ``repo_id``: write scope and a matching repo glob."""
    secret = bearer(request)
    if secret is None:
        raise AccessDenied(
            f"writing to {repo_id} needs a token with write scope",
            hint="create one on the node: `hubd tokens create --scope write --name <you>`",
        )
    token = await asyncio.to_thread(find_token, request.app[CONTEXT], secret)
    if token is None:
        raise AccessDenied("invalid or revoked token")
    name = token.name or f"token-{token.id}"
    if token.scope != "write":
        raise Forbidden(f"token {name!r} is read-only: writing to {repo_id} needs write scope")
    if not token.may_write(repo_id):
        globs = ", ".join(token.repos or [])
        raise Forbidden(f"token {name!r} may write only {globs}, not {repo_id}")
    return token


def author_of(token: TokenInfo) -> str:
    return token.name or f"token-{token.id}"


def endpoint(request: web.Request) -> str:
    """This node as the client reached it: where upload and verify actions point."""
    return f"{request.scheme}://{request.host}"


async def _body(request: web.Request, model: type[M]) -> M:
    try:
        data = await request.json()
    except (ValueError, RecursionError):
        raise InvalidRequest(f"expected a JSON body ({model.__name__})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(f"bad request body: {problem(exc)}") from None


def _no_pull_requests(request: web.Request) -> None:
    if request.query.get("create_pr") in ("1", "true", "True"):
        raise InvalidRequest(
            "hubd does not host pull requests: commit to a branch instead "
            "(`hf upload --revision <branch>`, `create_commit(revision=...)`)"
        )


async def create_repo(request: web.Request) -> web.Response:
    """POST /api/repos/create {"name", "organization"}: a model repo with its first commit."""
    body = await _body(request, CreateRepoBody)
    if body.type != "model":
        raise InvalidRequest(f"hubd hosts model repos, not {body.type}s")
    if body.organization is None and "/" not in body.name:
        raise InvalidRequest("hubd repo ids are org/name: pass an organization")
    repo_id = RepoRef.parse(
        f"{body.organization}/{body.name}" if body.organization else body.name
    ).repo_id
    token = await writer_token(request, repo_id)
    ctx = request.app[CONTEXT]
    url = f"{endpoint(request)}/{repo_id}"
    try:
        await asyncio.to_thread(
            commits.create_repo, ctx, repo_id, author_of(token), endpoint(request)
        )
    except Conflict as exc:  # the Hub's 409 names the repo: create_repo(exist_ok=True) reads it
        headers = {"X-Error-Code": exc.code, "X-Error-Message": exc.message}
        return web.json_response({"error": exc.message, "url": url}, status=409, headers=headers)
    return web.json_response({"url": url, "name": repo_id})


async def preupload(request: web.Request) -> web.Response:
    """POST /api/models/{org}/{name}/preupload/{rev}: LFS or regular per file, and the oid the
    branch head has for it (so the client skips what did not change)."""
    repo_id = _repo(request)
    rev = check_revision(request.match_info["rev"])
    _no_pull_requests(request)
    await writer_token(request, repo_id)
    body = await _body(request, PreuploadBody)

    def held() -> dict[str, str]:
        with request.app[CONTEXT].catalog() as session:
            revision = find_revision(session, repo_id, rev)
            if revision is None:
                if not repo_exists(session, repo_id):
                    raise RepoNotFound(f"Repository {repo_id} not found")
                return {}  # a branch the commit will find missing
            return {f.path: f.sha256 if f.lfs else f.git_oid or "" for f in revision.files}

    oids = await asyncio.to_thread(held)
    files = []
    for f in body.files:
        entry: dict[str, Any] = {
            "path": f.path,
            "uploadMode": "lfs" if is_lfs(f.path, f.size) else "regular",
            "shouldIgnore": False,
        }
        if oids.get(f.path):
            entry["oid"] = oids[f.path]
        files.append(entry)
    return web.json_response({"files": files})


def _signature(key: bytes, oid: str, size: int, expires: int, what: str = "put") -> str:
    message = f"{oid}:{size}:{expires}:{what}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _signed(request: web.Request, path: str, oid: str, size: int, expires: int, what: str) -> str:
    sig = _signature(request.app[UPLOAD_KEY], oid, size, expires, what)
    return f"{endpoint(request)}{path}?size={size}&expires={expires}&sig={sig}"


def _ticket(request: web.Request, what: str) -> tuple[str, int]:
    """(sha256, size) of a signed upload URL this node handed out and that has not expired."""
    oid = request.match_info["sha256"]
    try:
        size, expires = int(request.query["size"]), int(request.query["expires"])
        sig = request.query["sig"]
    except (KeyError, ValueError):
        raise AccessDenied("not a signed upload URL: ask the LFS batch API for one") from None
    expected = _signature(request.app[UPLOAD_KEY], oid, size, expires, what)
    if not hmac.compare_digest(sig, expected) or expires < time.time():
        raise AccessDenied("upload URL invalid or expired: ask the LFS batch API again")
    return oid, size


async def lfs_batch(request: web.Request) -> web.Response:
    """POST /{org}/{name}.git/info/lfs/objects/batch: where to upload what this node lacks."""
    repo_id = RepoRef.parse(
        f"{request.match_info['org']}/{request.match_info['name'].removesuffix('.git')}"
    ).repo_id
    await writer_token(request, repo_id)
    body = await _body(request, LfsBatchBody)
    if body.operation != "upload":
        raise InvalidRequest("download through /{repo}/resolve/{rev}/{path}, not the LFS batch API")
    if "basic" not in body.transfers and "multipart" not in body.transfers:
        raise InvalidRequest("hubd serves the basic and multipart LFS transfers")
    ctx = request.app[CONTEXT]
    await asyncio.to_thread(parts.discard_stale, ctx.store)
    expires = int(time.time()) + UPLOAD_TTL
    multipart = "multipart" in body.transfers
    objects = []
    for obj in body.objects:
        entry: dict[str, Any] = {"oid": obj.oid, "size": obj.size, "authenticated": True}
        if not await asyncio.to_thread(ctx.store.has_blob, obj.oid, obj.size):
            verify = {"href": f"{endpoint(request)}/{repo_id}.git/info/lfs/objects/verify"}
            blob = f"{SIGNED_PREFIX}{obj.oid}"
            if multipart and obj.size >= parts.MULTIPART_MIN:
                header = {"chunk_size": str(parts.PART_SIZE)}
                for n in range(1, parts.part_count(obj.size) + 1):
                    header[str(n)] = _signed(
                        request, f"{blob}/part/{n}", obj.oid, obj.size, expires, f"part-{n}"
                    )
                done = _signed(request, f"{blob}/complete", obj.oid, obj.size, expires, "complete")
                upload = {"href": done, "header": header, "expires_in": UPLOAD_TTL}
            else:
                href = _signed(request, blob, obj.oid, obj.size, expires, "put")
                upload = {"href": href, "expires_in": UPLOAD_TTL}
            entry["actions"] = {"upload": upload, "verify": verify}
        objects.append(entry)
    return web.json_response(
        {"transfer": "multipart" if multipart else "basic", "objects": objects},
        content_type="application/vnd.git-lfs+json",
    )


async def lfs_part(request: web.Request) -> web.Response:
    """PUT /api/hubd/lfs/{sha256}/part/{n}?…: one part of a multipart upload, staged whole."""
    number = int(request.match_info["n"])
    oid, size = _ticket(request, f"part-{number}")
    length = parts.part_length(size, number)
    if request.content_length is not None and request.content_length != length:
        raise InvalidRequest(f"part {number} is {length} bytes, not {request.content_length}")
    data = bytearray()
    async for chunk in request.content.iter_chunked(1024 * 1024):
        data += chunk
        if len(data) > length:
            raise InvalidRequest(f"part {number} is longer than its {length} bytes")
    store = request.app[CONTEXT].store
    etag = await asyncio.to_thread(parts.stage_part, store, oid, size, number, [bytes(data)])
    return web.Response(status=200, headers={"ETag": f'"{etag}"'})


class PartDone(Open):
    partNumber: Annotated[StrictInt, Field(ge=1, le=10_000)]
    etag: Annotated[StrictStr, Field(max_length=100)]


class CompletionBody(Open):
    oid: Sha256
    parts: Annotated[list[PartDone], Field(min_length=1, max_length=10_000)]


async def lfs_complete(request: web.Request) -> web.Response:
    """POST /api/hubd/lfs/{sha256}/complete?…: join the parts into the verified blob."""
    oid, size = _ticket(request, "complete")
    body = await _body(request, CompletionBody)
    if body.oid != oid:
        raise InvalidRequest("the completion names another object than its URL")
    etags = {p.partNumber: p.etag for p in body.parts}
    await asyncio.to_thread(parts.complete, request.app[CONTEXT].store, oid, size, etags)
    return web.json_response({"oid": oid, "size": size})


async def lfs_upload(request: web.Request) -> web.Response:
    """PUT /api/hubd/lfs/{sha256}?size&expires&sig: the bytes, hashed into the store on arrival.

    A body that is not ``size`` bytes of that sha256 is a 400, and its partial file is removed.
    """
    oid, size = _ticket(request, "put")
    if request.content_length is not None and request.content_length != size:
        raise InvalidRequest(f"the body is {request.content_length} bytes, the batch said {size}")
    writer = request.app[CONTEXT].store.writer(Expected(f"upload {oid}", size, oid))
    await enter_in_thread(writer)
    try:
        if writer.present is None:
            await asyncio.to_thread(writer.restart)
            await _receive(request, writer, oid, size)
    finally:
        writer.__exit__(None, None, None)
    return web.Response(status=200, headers={"ETag": f'"{oid}"'})


async def _receive(request: web.Request, writer: Any, oid: str, size: int) -> None:
    try:
        async for chunk in request.content.iter_chunked(1024 * 1024):
            await asyncio.to_thread(writer.write, chunk)
        await asyncio.to_thread(writer.commit)
    except (HashMismatch, SizeMismatch) as exc:
        writer.discard()
        raise InvalidRequest(f"upload refused, nothing kept: {exc.message}") from None
    except BaseException:
        writer.discard()  # a broken upload is retried whole: basic transfers do not resume
        raise


async def lfs_verify(request: web.Request) -> web.Response:
    """POST /{org}/{name}.git/info/lfs/objects/verify {"oid", "size"}: is it stored, verified?"""
    repo_id = RepoRef.parse(
        f"{request.match_info['org']}/{request.match_info['name'].removesuffix('.git')}"
    ).repo_id
    await writer_token(request, repo_id)
    obj = await _body(request, LfsObject)
    if not await asyncio.to_thread(request.app[CONTEXT].store.has_blob, obj.oid, obj.size):
        raise EntryNotFound(f"LFS object {obj.oid} ({obj.size} bytes) is not on this node")
    return web.json_response({"oid": obj.oid, "size": obj.size})


async def _lines(request: web.Request) -> AsyncIterator[bytes]:
    """The body's ndjson lines, each at most MAX_LINE, the whole at most MAX_COMMIT bytes."""
    if (request.content_length or 0) > MAX_COMMIT:
        raise InvalidRequest(f"commit bodies are at most {MAX_COMMIT} bytes: LFS takes the rest")
    line, total = bytearray(), 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > MAX_COMMIT:
            raise InvalidRequest(f"commit bodies are at most {MAX_COMMIT} bytes")
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line += chunk[start:end]
            start = end + 1
            if len(line) > MAX_LINE:
                break
            if line.strip():
                yield bytes(line)
            line.clear()
        line += chunk[start:]
        if len(line) > MAX_LINE:
            raise InvalidRequest(f"an ndjson line is at most {MAX_LINE} bytes")
    if line.strip():
        yield bytes(line)


def _line(raw: bytes, number: int) -> tuple[str, Any]:
    try:
        item = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidRequest(f"line {number} of the commit is not JSON") from None
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "value" not in item:
        raise InvalidRequest(f'line {number}: expected {{"key": …, "value": …}}')
    return item["key"], item["value"]


def _value(model: type[M], value: Any, number: int) -> M:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidRequest(f"line {number}: {problem(exc)}") from None


async def commit(request: web.Request) -> web.Response:
    """POST /api/models/{org}/{name}/commit/{rev}: the ndjson commit (header, then operations)."""
    ctx = request.app[CONTEXT]
    repo_id = _repo(request)
    branch = check_revision(request.match_info["rev"])
    _no_pull_requests(request)
    token = await writer_token(request, repo_id)
    header: CommitHeader | None = None
    changes: list[commits.Change] = []
    number = 0
    async for raw in _lines(request):
        number += 1
        if number > MAX_OPERATIONS + 1:
            raise InvalidRequest(f"a commit holds at most {MAX_OPERATIONS} operations")
        key, value = _line(raw, number)
        if header is None:
            if key != "header":
                raise InvalidRequest("the commit's first line must be its header")
            header = _value(CommitHeader, value, number)
        elif key == "file":
            regular = _value(RegularValue, value, number)
            try:
                data = base64.b64decode(regular.content, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest(f"line {number}: {regular.path} is not base64") from None
            stored = await asyncio.to_thread(commits.store_regular, ctx, regular.path, data)
            changes.append(stored)
        elif key == "lfsFile":
            lfs = _value(LfsValue, value, number)
            changes.append(commits.LfsFile(lfs.path, lfs.oid, lfs.size))
        elif key in ("deletedFile", "deletedFolder"):
            if key == "deletedFolder" and isinstance(value, dict):  # "notes/" names a folder
                value = {**value, "path": str(value.get("path", "")).rstrip("/")}
            deleted = _value(DeletedValue, value, number)
            changes.append(commits.Deletion(deleted.path, key == "deletedFolder"))
        else:
            raise InvalidRequest(f"line {number}: unknown operation {key[:40]!r}")
    if header is None:
        raise InvalidRequest("empty commit body: expected a header line")
    message = header.summary + (f"\n\n{header.description}" if header.description else "")
    done = await asyncio.to_thread(
        commits.commit,
        ctx,
        repo_id,
        branch,
        changes,
        message,
        author_of(token),
        endpoint(request),
        header.parentCommit,
    )
    return web.json_response(
        {
            "success": True,
            "commitOid": done.commit,
            "commitUrl": f"{endpoint(request)}/{repo_id}/commit/{done.commit}",
            "pullRequestUrl": None,
        }
    )


async def branch(request: web.Request) -> web.Response:
    """POST/DELETE /api/models/{org}/{name}/branch/{branch} (``startingPoint`` to branch from)."""
    ctx = request.app[CONTEXT]
    repo_id = _repo(request)
    name = request.match_info["rev"]
    await writer_token(request, repo_id)
    if request.method == "DELETE":
        await asyncio.to_thread(commits.delete_ref, ctx, repo_id, name, RefKind.BRANCH)
        return web.json_response({})
    body = await _body(request, BranchBody) if request.can_read_body else BranchBody()
    await asyncio.to_thread(
        commits.create_ref, ctx, repo_id, name, RefKind.BRANCH, body.startingPoint
    )
    return web.json_response({})


async def tag(request: web.Request) -> web.Response:
    """POST /api/models/{org}/{name}/tag/{rev} {"tag"}; DELETE …/tag/{tag}."""
    ctx = request.app[CONTEXT]
    repo_id = _repo(request)
    rev = request.match_info["rev"]
    await writer_token(request, repo_id)
    if request.method == "DELETE":
        await asyncio.to_thread(commits.delete_ref, ctx, repo_id, rev, RefKind.TAG)
        return web.json_response({})
    body = await _body(request, TagBody)
    await asyncio.to_thread(commits.create_ref, ctx, repo_id, body.tag, RefKind.TAG, rev)
    return web.json_response({})


async def xet_write_token(_: web.Request) -> web.Response:
    """GET /api/models/{org}/{name}/xet-write-token/{rev}: refused, saying what to do instead."""
    raise InvalidRequest(XET, hint="export HF_HUB_DISABLE_XET=1")


async def validate_yaml(request: web.Request) -> web.Response:
    """POST /api/validate-yaml: create_commit's check of a README's front matter (no errors
    hubd would act on: a card it cannot parse is recorded without metadata)."""
    return web.json_response({"errors": [], "warnings": []})


def add_routes(app: web.Application) -> None:
    """The write routes; registered before hfapi's catch-all /api/models routes."""
    app[UPLOAD_KEY] = fleet_secret(app[CONTEXT].catalog, "upload-url")
    repo = "/api/models/{org}/{name}"
    router = app.router
    router.add_post("/api/repos/create", create_repo)
    router.add_post("/api/validate-yaml", validate_yaml)
    router.add_post(repo + "/preupload/{rev:.+}", preupload)
    router.add_post(repo + "/commit/{rev:.+}", commit)
    router.add_post(repo + "/branch/{rev:.+}", branch)
    router.add_delete(repo + "/branch/{rev:.+}", branch)
    router.add_post(repo + "/tag/{rev:.+}", tag)
    router.add_delete(repo + "/tag/{rev:.+}", tag)
    router.add_get(repo + "/xet-write-token/{rev:.+}", xet_write_token)
    router.add_post("/{org}/{name}/info/lfs/objects/batch", lfs_batch)
    router.add_post("/{org}/{name}/info/lfs/objects/verify", lfs_verify)
    router.add_put("/api/hubd/lfs/{sha256:[0-9a-f]{64}}", lfs_upload)
    router.add_put("/api/hubd/lfs/{sha256:[0-9a-f]{64}}/part/{n:[1-9][0-9]{0,4}}", lfs_part)
    router.add_post("/api/hubd/lfs/{sha256:[0-9a-f]{64}}/complete", lfs_complete)
