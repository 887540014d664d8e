"""`hubd add DIR --to URL`: publish a directory to a hubd node over the Hub's write API.

The same routes `hf upload` uses (create repo, preupload, the LFS batch API, the ndjson commit),
so publishing from any machine needs only a write token, and the node verifies, judges, signs
and attributes the commit as it does for the stock client. The directory is walked and hashed
as local `hubd add` does (ops.publish); the branch ends up holding exactly its files: what the
branch has and the directory lacks is deleted in the same commit, unchanged files are not sent.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2

from ..errors import HubdError, InvalidRequest, UpstreamError
from ..refs import RepoRef, check_revision
from ..trust.shipped import SIGNATURE_FILE
from .publish import digests_of, files_below, is_lfs

TIMEOUT = httpx2.Timeout(60.0, connect=10.0)
KEEP = frozenset({".gitattributes"})  # what the node's first commit made, kept on the branch


@dataclass(frozen=True)
class PushResult:
    repo: str
    revision: str
    commit: str
    url: str
    files: int
    changed: int
    deleted: int
    bytes_uploaded: int
    seconds: float
    up_to_date: bool  # the branch already held exactly these files: no commit was made

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Local:
    path: str
    file: Path
    sha256: str
    git_oid: str
    size: int

    @property
    def lfs(self) -> bool:
        return is_lfs(self.path, self.size)

    @property
    def oid(self) -> str:
        """What the Hub's preupload answers for it: the sha256 of an LFS file, else the blob id."""
        return self.sha256 if self.lfs else self.git_oid


def _error(response: httpx2.Response) -> HubdError:
    """The node's refusal as the typed error it raised there (its X-Error-Code)."""
    code = response.headers.get("X-Error-Code", "")
    message = response.headers.get("X-Error-Message") or response.text[:500]
    pending: list[type[HubdError]] = [HubdError]
    while pending:
        cls = pending.pop()
        if cls.code == code and cls.__init__ is HubdError.__init__:
            return cls(f"{response.url.host}: {message}")
        pending.extend(cls.__subclasses__())
    return UpstreamError(f"{response.url}: HTTP {response.status_code}: {message}")


def _check(response: httpx2.Response, *ok: int) -> httpx2.Response:
    if response.status_code not in (200, *ok):
        raise _error(response)
    return response


def _walk(root: Path) -> list[_Local]:
    if not root.is_dir():
        raise InvalidRequest(f"{root} is not a directory")
    entries = files_below(root)
    if (root / SIGNATURE_FILE).is_file():
        entries.append((SIGNATURE_FILE, root / SIGNATURE_FILE))  # a trust rule may require it
    if not entries:
        raise InvalidRequest(f"{root} has no files to add")
    found = []
    for rel, path in entries:
        sha256, git_oid, size = digests_of(path)
        found.append(_Local(rel, path, sha256, git_oid, size))
    return found


def _commit_body(
    message: str, parent: str, changed: list[_Local], deleted: list[str]
) -> Iterator[bytes]:
    header = {"summary": message, "description": "", "parentCommit": parent}
    yield json.dumps({"key": "header", "value": header}).encode() + b"\n"
    for f in changed:
        if f.lfs:
            value = {"path": f.path, "algo": "sha256", "oid": f.sha256, "size": f.size}
            yield json.dumps({"key": "lfsFile", "value": value}).encode() + b"\n"
        else:
            content = base64.b64encode(f.file.read_bytes()).decode()
            value = {"path": f.path, "content": content, "encoding": "base64"}
            yield json.dumps({"key": "file", "value": value}).encode() + b"\n"
    for path in deleted:
        yield json.dumps({"key": "deletedFile", "value": {"path": path}}).encode() + b"\n"


def push(
    root: Path,
    repo_id: str,
    url: str,
    token: str,
    revision: str = "main",
    message: str | None = None,
) -> PushResult:
    """Publish ``root`` as ``repo_id``@``revision`` on the node at ``url`` (blocking)."""
    started = time.monotonic()
    repo_id = RepoRef.parse(repo_id).repo_id
    check_revision(revision)
    local = _walk(root)
    base = url.rstrip("/")
    rev = quote(revision, safe="")
    api = f"/api/models/{repo_id}"
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "hubd-add"}
    try:
        with httpx2.Client(base_url=base, headers=headers, timeout=TIMEOUT) as client:
            org, name = repo_id.split("/")
            body = {"name": name, "organization": org, "type": "model"}
            _check(client.post("/api/repos/create", json=body), 409)
            if revision != "main":
                _check(client.post(f"{api}/branch/{rev}", json={}), 409)
            info = _check(client.get(f"{api}/revision/{rev}")).json()
            remote = {s["rfilename"] for s in info.get("siblings", [])}
            files = [{"path": f.path, "size": f.size, "sample": ""} for f in local]
            modes = _check(client.post(f"{api}/preupload/{rev}", json={"files": files})).json()
            held = {m["path"]: m.get("oid") for m in modes["files"]}
            changed = [f for f in local if held.get(f.path) != f.oid]
            uploaded = _upload_lfs(client, repo_id, [f for f in changed if f.lfs])
            names = {f.path for f in local}
            deleted = sorted(p for p in remote if p not in names and p not in KEEP)
            text = message or f"hubd add {root.name or root}"
            if not changed and not deleted:
                commit_url = f"{base}/{repo_id}/commit/{info['sha']}"
                answer = {"commitOid": info["sha"], "commitUrl": commit_url}
            else:
                answer = _check(
                    client.post(
                        f"{api}/commit/{rev}",
                        content=b"".join(_commit_body(text, info["sha"], changed, deleted)),
                        headers={"Content-Type": "application/x-ndjson"},
                    )
                ).json()
    except httpx2.HTTPError as exc:
        raise UpstreamError(f"{base}: {exc}") from None
    return PushResult(
        repo=repo_id,
        revision=revision,
        commit=answer["commitOid"],
        url=answer["commitUrl"],
        files=len(local),
        changed=len(changed),
        deleted=len(deleted),
        bytes_uploaded=uploaded,
        seconds=round(time.monotonic() - started, 3),
        up_to_date=not changed and not deleted,
    )


def _upload_lfs(client: httpx2.Client, repo_id: str, files: list[_Local]) -> int:
    """Upload the LFS files the node lacks (basic transfer) and have it verify each: bytes sent."""
    if not files:
        return 0
    body = {
        "operation": "upload",
        "transfers": ["basic"],
        "objects": [{"oid": f.sha256, "size": f.size} for f in files],
        "hash_algo": "sha256",
    }
    batch = _check(client.post(f"/{repo_id}.git/info/lfs/objects/batch", json=body)).json()
    by_oid = {f.sha256: f for f in files}
    sent = 0
    for obj in batch["objects"]:
        actions = obj.get("actions")
        if not actions:
            continue  # the node has it already
        f = by_oid[obj["oid"]]
        with f.file.open("rb") as fh:
            _check(client.put(actions["upload"]["href"], content=fh))
        verify = actions.get("verify")
        if verify:
            _check(client.post(verify["href"], json={"oid": f.sha256, "size": f.size}))
        sent += f.size
    return sent
