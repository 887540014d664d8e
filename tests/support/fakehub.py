"""A loopback Hugging Face Hub, so the real `huggingface_hub` client and hubd's downloader can be
exercised offline.

The server speaks the subset of the Hub protocol that downloads rely on, with the exact headers and
error contract `huggingface_hub` expects (see `hf_raise_for_status` and `get_hf_file_metadata`):

* `/api/models/{repo}[/revision/{rev}]` and `/api/models/{repo}/tree/{rev}[/{path}]` (metadata),
  `/api/models?search=…&limit=…` (ids only);
* `/{repo}/resolve/{rev}/{path}`: regular files are served directly, LFS files get a 302 to a
  second "CDN" host on another port. Because that host is a different origin, the client stops at
  the 302, reads `X-Linked-Etag`/`X-Linked-Size`/`X-Repo-Commit` from it and drops its
  `Authorization` header for the download, exactly as with the real Hub.

No `X-Xet-*` header is ever sent, so clients always take the plain HTTP path. Faults (corruption,
dropped connections, throttling, stalls) can be injected per file while the server runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urlencode

from aiohttp import hdrs, web
from huggingface_hub import ModelCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK

LFS_SUFFIXES = (
    ".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx",
)  # fmt: skip
_CHUNK = 1024 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# FileResponse always computes its own mtime-based ETag; this key carries the Hub's one instead.
_HUB_ETAG = web.ResponseKey("hub_etag", str)


@dataclass(frozen=True)
class RequestRecord:
    """One request as received, for assertions on what a client actually did."""

    method: str
    path: str  # raw (still percent-encoded) path including the query string
    range: str | None
    authorization: bool  # whether an Authorization header was sent


@dataclass(frozen=True)
class _Blob:
    """File content plus the identifiers the Hub reports for it."""

    source: bytes | Path
    size: int
    sha256: str
    oid: str  # git blob sha1 of the content, or of the LFS pointer for LFS files
    lfs: bool

    @property
    def etag(self) -> str:
        """The Hub's ETag: sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.oid

    def open(self) -> IO[bytes]:
        return self.source.open("rb") if isinstance(self.source, Path) else BytesIO(self.source)


@dataclass(frozen=True)
class _Commit:
    sha: str
    files: dict[str, _Blob]  # sorted by path
    dirs: dict[str, str]  # directory path ("" = root) -> git tree sha1
    card: dict[str, Any] | None  # README.md front matter
    date: datetime


@dataclass
class _Repo:
    commits: dict[str, _Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit sha
    tags: set[str] = field(default_factory=set)  # which refs are tags
    gated: bool = False
    extra_info: dict[str, Any] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def resolve(self, rev: str) -> _Commit | None:
        return self.commits.get(self.refs.get(rev, rev))


class FakeHub:
    """Hub-compatible HTTP server on 127.0.0.1 serving in-memory or on-disk model repos.

    Repos may be added while the server runs. The fault knobs (`corrupt`, `drop_after`,
    `throttle`, `stall`, `declared_size`) are keyed by repo file path and read on every request,
    so tests can flip them at any time. `declared_size` makes the metadata (model info, tree,
    `X-Linked-Size`) lie about a file's size while the bytes served stay true; `api_errors` answers
    the next API requests with those statuses, one each. Use as a context
    manager (background thread) or via `start_async`.
    """

    def __init__(self, *, lfs_threshold: int = 10 * 1024 * 1024, page_size: int = 1000) -> None:
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.tokens: set[str] = set()
        self.requests: list[RequestRecord] = []
        self.corrupt: set[str] = set()
        self.drop_after: dict[str, int] = {}
        self.throttle: float | None = None
        self.stall: set[str] = set()
        self.declared_size: dict[str, int] = {}
        self.api_errors: list[int] = []  # statuses the next API requests get, one each
        self.cdn_busy_above: int | None = None  # the CDN 429s a request past this many at once
        self.cdn_in_flight = 0
        self.cdn_peak = 0  # most CDN requests streaming at once (with a fault or throttle set)
        self.cdn_refused = 0  # 429s the CDN sent
        self.endpoint = ""
        self.cdn_endpoint = ""
        self._repos: dict[str, _Repo] = {}
        self._blobs: dict[str, _Blob] = {}  # sha256 -> blob, what the CDN host serves
        self._requests_lock = threading.Lock()
        self._runners: list[web.AppRunner] = []
        self._thread: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None

    # ----------------------------------------------------------------------------- repos

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        branch: str = "main",
        tags: Sequence[str] = (),
        gated: bool = False,
        extra_info: Mapping[str, Any] | None = None,
    ) -> str:
        """Commit a full snapshot of `files` to `branch` (and `tags`); return the commit sha.

        The sha is derived from the repo id, the parent commit and the files' names and sha256, so
        it is stable across runs. Earlier commits stay reachable by sha. `gated` and `extra_info`
        describe the repo from this call on.
        """
        blobs = {name: self._blob(name, files[name]) for name in sorted(files)}
        repo = self._repos.get(repo_id) or _Repo()
        parent = repo.refs.get(branch, "")
        digest = hashlib.sha1(f"{repo_id}\n{parent}\n".encode(), usedforsecurity=False)
        for name, blob in blobs.items():
            digest.update(f"{name}\0{blob.sha256}\n".encode())
        readme = blobs.get("README.md")
        commit = _Commit(
            sha=digest.hexdigest(),
            files=blobs,
            dirs=_tree_oids(blobs),
            card=_card_data(readme) if readme is not None else None,
            date=datetime.now(UTC),
        )
        for blob in blobs.values():
            self._blobs[blob.sha256] = blob
        repo.commits[commit.sha] = commit
        for ref in (branch, *tags):
            repo.refs[ref] = commit.sha
        repo.tags.update(tags)
        repo.gated = gated
        repo.extra_info = dict(extra_info or {})
        self._repos[repo_id] = repo
        return commit.sha

    def _blob(self, name: str, content: bytes | Path) -> _Blob:
        """Hash content once (streaming for Paths, which are never loaded into memory)."""
        size = len(content) if isinstance(content, bytes) else content.stat().st_size
        lfs = name.endswith(LFS_SUFFIXES) or size >= self.lfs_threshold
        sha256 = hashlib.sha256()
        sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        chunks = [content] if isinstance(content, bytes) else _read_chunks(content)
        for chunk in chunks:
            sha256.update(chunk)
            if not lfs:
                sha1.update(chunk)
        if lfs:
            pointer = _lfs_pointer(sha256.hexdigest(), size)
            sha1 = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer, usedforsecurity=False)
        return _Blob(content, size, sha256.hexdigest(), sha1.hexdigest(), lfs)

    # ------------------------------------------------------------------------- lifecycle

    async def start_async(self) -> str:
        """Serve on the running loop: the API host and the CDN host, each on an OS-chosen port."""
        api = web.Application()
        api.router.add_get("/{tail:.*}", self._handle_api)
        cdn = web.Application()
        cdn.router.add_get("/cdn/{sha256}", self._handle_cdn)
        urls = []
        for app in (api, cdn):
            app.on_response_prepare.append(_apply_hub_etag)
            # handler_cancellation: stalled/throttled handlers end as soon as the client goes away.
            runner = web.AppRunner(
                app, access_log=None, handler_cancellation=True, shutdown_timeout=0.2
            )
            await runner.setup()
            sock = socket.create_server(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)
            urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        self.endpoint, self.cdn_endpoint = urls
        return self.endpoint

    async def stop_async(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    def start(self) -> str:
        """Serve from a background thread with its own event loop; return the API endpoint."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fakehub", daemon=True)
        thread.start()
        self._thread = (loop, thread)
        try:
            return asyncio.run_coroutine_threadsafe(self.start_async(), loop).result()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._thread is None:
            return
        loop, thread = self._thread
        self._thread = None
        asyncio.run_coroutine_threadsafe(self.stop_async(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------- handlers

    def _record(self, request: web.Request) -> None:
        record = RequestRecord(
            request.method,
            request.raw_path,
            request.headers.get(hdrs.RANGE),
            hdrs.AUTHORIZATION in request.headers,
        )
        with self._requests_lock:
            self.requests.append(record)

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        """Route on the raw path: revisions and tree paths arrive percent-encoded (`%2F`)."""
        self._record(request)
        if self.api_errors:
            status = self.api_errors.pop(0)
            return _error(status, None, "Too Many Requests" if status == 429 else "Hub error")
        parts = request.rel_url.raw_path.strip("/").split("/")
        if parts == ["api", "models"]:  # the search, by substring of the id as on the Hub
            search = request.query.get("search", "").lower()
            found = sorted(r for r in self._repos if search in r.lower())
            limit = int(request.query.get("limit", "1000"))
            return web.json_response([{"id": r, "modelId": r} for r in found[:limit]])
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id, rest = f"{unquote(parts[2])}/{unquote(parts[3])}", parts[4:]
            if not rest:
                return self._model_info(request, repo_id, "main")
            if rest[0] == "revision" and len(rest) >= 2:
                return self._model_info(request, repo_id, unquote("/".join(rest[1:])))
            if rest == ["refs"]:
                return self._refs(repo_id)
            if rest[0] == "tree" and len(rest) >= 2:
                path = unquote("/".join(rest[2:])).strip("/")
                return self._tree(request, repo_id, unquote(rest[1]), path)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo_id = f"{unquote(parts[0])}/{unquote(parts[1])}"
            return await self._resolve(
                request, repo_id, unquote(parts[3]), unquote("/".join(parts[4:]))
            )
        return _error(404, None, "Not Found")

    def _lookup(self, repo_id: str, rev: str) -> tuple[_Repo, _Commit] | web.Response:
        """Repo and revision, or the Hub's RepoNotFound / RevisionNotFound answer."""
        repo = self._repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        commit = repo.resolve(rev)
        if commit is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo, commit

    def _refs(self, repo_id: str) -> web.Response:
        """``list_repo_refs``: branches and tags as the Hub lists them."""
        repo = self._repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        answer: dict[str, list[dict[str, str]]] = {"branches": [], "tags": [], "converts": []}
        for name, sha in sorted(repo.refs.items()):
            kind = "tags" if name in repo.tags else "branches"
            full = f"refs/{'tags' if name in repo.tags else 'heads'}/{name}"
            answer[kind].append({"name": name, "ref": full, "targetCommit": sha})
        return web.json_response(answer)

    def _model_info(self, request: web.Request, repo_id: str, rev: str) -> web.Response:
        """Model metadata; public even for gated repos, like on the Hub."""
        found = self._lookup(repo_id, rev)
        if isinstance(found, web.Response):
            return found
        repo, commit = found
        blobs_requested = request.query.get("blobs", "").lower() == "true"
        siblings = []
        for name, blob in commit.files.items():
            sibling: dict[str, Any] = {"rfilename": name}
            if blobs_requested:
                size = self.declared_size.get(name, blob.size)
                sibling |= {"size": size, "blobId": blob.oid}
                if blob.lfs:
                    sibling["lfs"] = {
                        "sha256": blob.sha256,
                        "size": size,
                        "pointerSize": len(_lfs_pointer(blob.sha256, blob.size)),
                    }
            siblings.append(sibling)
        card = commit.card or {}
        library = card.get("library_name") or _infer_library(commit.files)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created),
            "private": False,
            "disabled": False,
            "gated": "auto" if repo.gated else False,
            "downloads": 0,
            "likes": 0,
            "tags": _hub_tags(card, commit.files, library),
            "pipeline_tag": card.get("pipeline_tag"),
            "library_name": library,
            "cardData": commit.card,
            "siblings": siblings,
        }
        info = {k: v for k, v in info.items() if v is not None} | repo.extra_info
        if expand := request.query.getall("expand", []):
            info = {k: v for k, v in info.items() if k in {"_id", "id", *expand}}
        return web.json_response(info)

    def _tree(self, request: web.Request, repo_id: str, rev: str, base: str) -> web.Response:
        """Tree listing, paginated with a `Link: <...cursor=N>; rel="next"` header."""
        found = self._lookup(repo_id, rev)
        if isinstance(found, web.Response):
            return found
        _, commit = found
        if base not in commit.dirs:
            return _error(404, "EntryNotFound", f"{base} does not exist on {rev!r}")
        recursive = request.query.get("recursive", "").lower() == "true"
        expand = request.query.get("expand", "").lower() == "true"
        prefix = f"{base}/" if base else ""
        paths = sorted(
            p
            for p in (*commit.files, *commit.dirs)
            if p.startswith(prefix) and p != base and (recursive or "/" not in p[len(prefix) :])
        )
        offset = int(request.query.get("cursor", "0"))
        page = paths[offset : offset + self.page_size]
        entries = []
        for path in page:
            blob = commit.files.get(path)
            entry: dict[str, Any]
            if blob is None:
                entry = {"type": "directory", "oid": commit.dirs[path], "size": 0, "path": path}
            else:
                size = self.declared_size.get(path, blob.size)
                entry = {"type": "file", "oid": blob.oid, "size": size, "path": path}
                if blob.lfs:
                    entry["lfs"] = {
                        "oid": blob.sha256,
                        "size": size,
                        "pointerSize": len(_lfs_pointer(blob.sha256, blob.size)),
                    }
            if expand:
                title = "Upload folder using huggingface_hub"
                entry["lastCommit"] = {"id": commit.sha, "title": title, "date": _iso(commit.date)}
            entries.append(entry)
        headers = {}
        if offset + self.page_size < len(paths):
            query = [(k, v) for k, v in request.query.items() if k != "cursor"]
            query.append(("cursor", str(offset + self.page_size)))
            next_url = f"{self.endpoint}{request.rel_url.raw_path}?{urlencode(query)}"
            headers[hdrs.LINK] = f'<{next_url}>; rel="next"'
        return web.json_response(entries, headers=headers)

    async def _resolve(
        self, request: web.Request, repo_id: str, rev: str, path: str
    ) -> web.StreamResponse:
        repo = self._repos.get(repo_id)
        if repo is None:
            return _error(404, "RepoNotFound", "Repository not found")
        if repo.gated and not self._authorized(request):
            return _error(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        commit = repo.resolve(rev)
        if commit is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        hub_headers = {"X-Repo-Commit": commit.sha}
        blob = commit.files.get(path)
        if blob is None:
            return _error(404, "EntryNotFound", "Entry not found", hub_headers)
        if not blob.lfs:
            return await self._send(request, blob, path, hub_headers)
        location = (
            f"{self.cdn_endpoint}/cdn/{blob.sha256}?{urlencode({'repo': repo_id, 'path': path})}"
        )
        etag = f'"{blob.sha256}"'
        return web.Response(
            status=302,
            text=f"Found. Redirecting to {location}",
            headers=hub_headers
            | {
                hdrs.LOCATION: location,
                hdrs.ETAG: etag,
                "X-Linked-Etag": etag,
                "X-Linked-Size": str(self.declared_size.get(path, blob.size)),
            },
        )

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        return scheme.lower() == "bearer" and token in self.tokens

    async def _handle_cdn(self, request: web.Request) -> web.StreamResponse:
        """Content-addressed blob host; `path` in the query names the file for fault injection."""
        self._record(request)
        blob = self._blobs.get(request.match_info["sha256"])
        if blob is None:
            return _error(404, None, "Not Found")
        if self.cdn_busy_above is not None and self.cdn_in_flight >= self.cdn_busy_above:
            self.cdn_refused += 1
            return _error(429, None, "Too Many Requests", {hdrs.RETRY_AFTER: "0"})
        self.cdn_in_flight += 1
        self.cdn_peak = max(self.cdn_peak, self.cdn_in_flight)
        try:
            return await self._send(request, blob, request.query.get("path", ""), {})
        finally:
            self.cdn_in_flight -= 1

    async def _send(
        self, request: web.Request, blob: _Blob, file: str, headers: dict[str, str]
    ) -> web.StreamResponse:
        """Serve (a Range of) a blob, via sendfile when no fault applies to `file`."""
        try:
            start, end = _byte_range(request.headers.get(hdrs.RANGE), blob.size)
        except ValueError:
            return web.Response(status=416, headers={hdrs.CONTENT_RANGE: f"bytes */{blob.size}"})
        headers = headers | {
            hdrs.ETAG: f'"{blob.etag}"',
            hdrs.ACCEPT_RANGES: "bytes",
            hdrs.CONTENT_DISPOSITION: f'inline; filename="{quote(file.rpartition("/")[2])}";',
        }
        faulty = (
            file in self.corrupt
            or file in self.stall
            or file in self.drop_after
            or self.throttle is not None
        )
        if not faulty and isinstance(blob.source, Path):
            response: web.StreamResponse = web.FileResponse(blob.source, headers=headers)
            response[_HUB_ETAG] = headers[hdrs.ETAG]
            return response
        status = 200
        if (start, end) != (0, blob.size):
            status = 206
            headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end - 1}/{blob.size}"
        if not faulty and isinstance(blob.source, bytes):
            return web.Response(status=status, body=blob.source[start:end], headers=headers)
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start
        await response.prepare(request)
        if request.method != hdrs.METH_HEAD:
            await self._stream_with_faults(request, response, blob, file, start, end)
        return response

    async def _stream_with_faults(
        self,
        request: web.Request,
        response: web.StreamResponse,
        blob: _Blob,
        file: str,
        start: int,
        end: int,
    ) -> None:
        """Stream bytes [start, end) honouring the fault knobs, re-read at every chunk.

        `drop_after[file] = n` cuts every response spanning absolute offset n (start < n < end)
        right there, after a clean flush: the client holds exactly n bytes and a resume from n
        succeeds. `corrupt` flips the byte at offset size // 2 whichever range covers it.
        """
        if file in self.stall:
            await asyncio.Event().wait()  # ends by cancellation: client gone or hub stopping
        cut = self.drop_after.get(file)
        stop = cut if cut is not None and start < cut < end else end
        flip = blob.size // 2 if file in self.corrupt else -1
        loop = asyncio.get_running_loop()
        pos = start
        with blob.open() as f:
            f.seek(start)
            while pos < stop:
                rate = self.throttle
                size = min(_CHUNK, stop - pos, max(1, int(rate / 10)) if rate else _CHUNK)
                chunk = await loop.run_in_executor(None, f.read, size)
                if not chunk:
                    break
                if pos <= flip < pos + len(chunk):
                    flipped = bytearray(chunk)
                    flipped[flip - pos] ^= 0xFF
                    chunk = bytes(flipped)
                await response.write(chunk)
                pos += len(chunk)
                if rate:
                    await asyncio.sleep(len(chunk) / rate)
        if pos < end and request.transport is not None:
            request.transport.close()


async def _apply_hub_etag(request: web.Request, response: web.StreamResponse) -> None:
    if (etag := response.get(_HUB_ETAG)) is not None:
        response.headers[hdrs.ETAG] = etag


def _error(
    status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Hub-style error: JSON body plus `X-Error-Code`, which `hf_raise_for_status` maps."""
    extra = {"X-Error-Code": code, "X-Error-Message": message} if code else {}
    return web.json_response(
        {"error": message}, status=status, headers={**(headers or {}), **extra}
    )


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """Half-open span for a single `bytes=` range; anything else means the whole body.

    Raises ValueError when the range is unsatisfiable (416).
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return 0, size
    first, last = match.groups()
    if not first:
        start, end = max(size - int(last), 0), size
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= end:
        raise ValueError(header)
    return start, end


def _read_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def _lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores for an LFS file; the Hub's `oid`/`blobId` is its git sha1."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _tree_oids(files: Mapping[str, _Blob]) -> dict[str, str]:
    """Git tree sha1 of every directory ("" = root), as the Hub reports for folders."""
    children: dict[str, dict[str, tuple[bool, str]]] = {"": {}}
    for path, blob in files.items():
        parent, _, name = path.rpartition("/")
        children.setdefault(parent, {})[name] = (False, blob.oid)
        while parent:
            children.setdefault(parent, {})
            parent = parent.rpartition("/")[0]
    oids: dict[str, str] = {}
    for directory in sorted(children, key=lambda d: d.count("/") + bool(d), reverse=True):
        entries = sorted(children[directory].items(), key=lambda e: e[0] + "/" * e[1][0])
        body = b"".join(
            f"{'40000' if is_dir else '100644'} {name}".encode() + b"\0" + bytes.fromhex(oid)
            for name, (is_dir, oid) in entries
        )
        oids[directory] = hashlib.sha1(
            b"tree %d\0" % len(body) + body, usedforsecurity=False
        ).hexdigest()
        if directory:
            parent, _, name = directory.rpartition("/")
            children[parent][name] = (True, oids[directory])
    return oids


def _card_data(readme: _Blob) -> dict[str, Any] | None:
    """README.md front matter, parsed by huggingface_hub as the Hub does for `cardData`."""
    with readme.open() as f:
        text = f.read().decode("utf-8-sig", errors="replace")
    if not REGEX_YAML_BLOCK.search(text):
        return None
    data: dict[str, Any] = ModelCard(text, ignore_metadata_errors=True).data.to_dict()  # type: ignore[no-untyped-call]
    return data


def _infer_library(files: Mapping[str, _Blob]) -> str | None:
    if "adapter_config.json" in files:
        return "peft"
    if "config.json" in files:
        return "transformers"
    if any(name.endswith(".gguf") for name in files):
        return "gguf"
    return None


def _hub_tags(
    card: Mapping[str, Any], files: Mapping[str, _Blob], library: str | None
) -> list[str]:
    """Card tags plus the ones the Hub derives (library, formats, datasets, base model, license)."""

    def as_list(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else list(value or [])

    tags = as_list(card.get("tags"))
    tags += [library] if library else []
    tags += [fmt for fmt in ("safetensors", "gguf") if any(f.endswith(f".{fmt}") for f in files)]
    tags += [f"dataset:{d}" for d in as_list(card.get("datasets"))]
    for base in as_list(card.get("base_model")):
        tags.append(f"base_model:{base}")
        if relation := card.get("base_model_relation"):
            tags.append(f"base_model:{relation}:{base}")
    tags += [f"license:{lic}" for lic in as_list(card.get("license"))]
    tags.append("region:us")
    return list(dict.fromkeys(tags))


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"
