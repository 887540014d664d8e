"""huggingface.co replayed on loopback: real recorded answers (tests/recordings/), no hubd code.

The recordings (``tests/recordings/*.json``, copied from ../shared/hf-recordings: status,
headers and JSON of the real Hub for one repo, ``wzshiming/gpt2``) are answered as recorded when
the method, path and query of a request match one. Around them, the shapes a client meets on
the Hub are reproduced from the recorded headers:

* a missing repo is the recorded 401 (no error code; ``Www-Authenticate``), a missing revision
  the recorded 404 ``RevisionNotFound``, a missing tree path or file the 404 ``EntryNotFound``;
* a small file is a 307 to the relative ``/api/resolve-cache/…`` URL, which serves it;
* an LFS file is a 302 to a second loopback host (the CDN) with ``X-Xet-Hash`` and
  ``Link: <…/xet-read-token/…>; rel="xet-auth"``, which a plain HTTP client must ignore;
* the recorded commit is also a name for ``main``, so a client that pins it finds the same.

File bodies are not recorded, only their size and sha256: the replay sends deterministic bytes
of the recorded size, and for the files it *materializes* (every non-LFS file, and the LFS files
named in ``lfs_files``) it rewrites what it declares about them, tree ``oid`` / ``lfs.oid`` /
``pointerSize``, ``X-Linked-Etag`` and ``ETag``, to the digests of those bytes, so a client can
verify every byte. Other LFS files keep their recorded digests; their bytes will not match.
The recorded model info lists names only (it was asked without ``blobs``); with
``blobs=True`` the replay answers ``?blobs=true`` with sizes and digests from the tree, in the
shape huggingface.co uses (``size``, ``blobId``, ``lfs: {sha256, size, pointerSize}``), which is
not recorded; with ``blobs=False`` it answers as recorded, as Olah does.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from aiohttp import web

RECORDINGS = Path(__file__).parent / "recordings"
BLOCK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def load(name: str) -> dict[str, Any]:
    """One recording, ``models.revision`` for ``models.revision.json``."""
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return data


def _block(path: str) -> bytes:
    seed = path.encode()
    return b"".join(hashlib.sha256(seed + b"%d" % i).digest() for i in range(BLOCK // 32))


def generated(path: str, lo: int, hi: int) -> Iterable[bytes]:
    """Bytes ``lo``..``hi`` of the stand-in for ``path``: its block repeated."""
    block = _block(path)
    while lo < hi:
        start = lo % BLOCK
        piece = block[start : min(BLOCK, start + hi - lo)]
        yield piece
        lo += len(piece)


def _digests(path: str, size: int) -> tuple[str, str]:
    """sha256 and git blob sha1 of the stand-in for ``path``."""
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    for piece in generated(path, 0, size):
        sha256.update(piece)
        sha1.update(piece)
    return sha256.hexdigest(), sha1.hexdigest()


def _pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


class ReplayHub:
    """The recorded repo on 127.0.0.1 (API host and CDN host); use as a context manager."""

    def __init__(self, *, lfs_files: Iterable[str] = ("64-8bits.tflite",), blobs: bool = True):
        meta = load("meta")
        self.repo: str = meta["fixture"]["model"]
        self.blobs = blobs
        self.requests: list[tuple[str, str]] = []  # (method, path with query) as received
        self.recorded = {
            (r["request"]["method"], r["request"]["path"]): r
            for r in (load(p.stem) for p in RECORDINGS.glob("models.*.json"))
        }
        info = load("models.revision")["response"]
        self.commit: str = info["json"]["sha"]
        self.tree: list[dict[str, Any]] = copy.deepcopy(load("models.tree.recursive")["response"])[
            "json"
        ]
        keep = set(lfs_files)
        for entry in self.tree:
            if entry["type"] != "file" or ("lfs" in entry and entry["path"] not in keep):
                continue
            sha256, sha1 = _digests(entry["path"], entry["size"])
            if "lfs" in entry:
                pointer = _pointer(sha256, entry["size"])
                entry["lfs"] |= {"oid": sha256, "pointerSize": len(pointer)}
                entry["oid"] = _git_oid(pointer)
            else:
                entry["oid"] = sha1
        self.files = {e["path"]: e for e in self.tree if e["type"] == "file"}
        self.endpoint = self.cdn_endpoint = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runners: list[web.AppRunner] = []

    # ------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> ReplayHub:
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="replayhub", daemon=True).start()
        self._loop = loop
        asyncio.run_coroutine_threadsafe(self._start(), loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        loop, self._loop = self._loop, None
        asyncio.run_coroutine_threadsafe(self._stop(), loop).result()
        loop.call_soon_threadsafe(loop.stop)

    async def _start(self) -> None:
        urls = []
        for handler in (self._api, self._cdn):
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
            await runner.setup()
            sock = socket.create_server(("127.0.0.1", 0))
            await web.SockSite(runner, sock).start()
            self._runners.append(runner)
            urls.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
        self.endpoint, self.cdn_endpoint = urls

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    # -------------------------------------------------------------------------- answers

    @staticmethod
    def _replay(recorded: dict[str, Any], body: Any = None, **headers: str) -> web.StreamResponse:
        """A recorded response; ``body`` (JSON or text) and ``headers`` in place of its own."""
        response = recorded["response"]
        if body is None:
            body = response.get("json", response.get("text", ""))
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        out = {
            k: v
            for k, v in response["headers"].items()
            if k.lower() not in ("content-length", "etag", "content-encoding")
        }
        return web.Response(status=response["status"], body=data, headers=out | headers)

    def _rev(self, rev: str) -> str | None:
        return "main" if rev in ("main", self.commit) else None

    def _missing_revision(self, rev: str) -> web.StreamResponse:
        message = f"Invalid rev id: {rev}"
        return self._replay(
            self.recorded[("GET", f"/api/models/{self.repo}/revision/does-not-exist")],
            {"error": message},
            **{"X-Error-Message": message},
        )

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        path = request.rel_url.raw_path
        parts = [unquote(p) for p in path.strip("/").split("/")]
        query = dict(parse_qsl(request.rel_url.raw_query_string))
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo, rest = "/".join(parts[2:4]), parts[4:]
            if repo != self.repo:
                return self._replay(self.recorded[("GET", "/api/models/wzshiming/does-not-exist")])
            if not rest or rest[0] == "revision":
                return self._model_info(rest[1] if rest[1:] else None, query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(rest[1], "/".join(rest[2:]), query)
        cached = [*self.repo.split("/"), self.commit]
        if parts[:3] == ["api", "resolve-cache", "models"] and parts[3:6] == cached:
            return await self._file(request, "/".join(parts[6:]), cdn=False)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        key = (request.method, request.path_qs)
        if key in self.recorded:
            return self._replay(self.recorded[key])
        return web.Response(status=404, text="Not Found")

    def _model_info(self, rev: str | None, query: dict[str, str]) -> web.StreamResponse:
        if rev is None:
            return self._replay(self.recorded[("GET", f"/api/models/{self.repo}")])
        if self._rev(rev) is None:
            return self._missing_revision(rev)
        recorded = self.recorded[("GET", f"/api/models/{self.repo}/revision/main")]
        info = copy.deepcopy(recorded["response"]["json"])
        if self.blobs and query.get("blobs") == "true":
            for sibling in info["siblings"]:
                entry = self.files[sibling["rfilename"]]
                sibling |= {"blobId": entry["oid"], "size": entry["size"]}
                if "lfs" in entry:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {
                        "sha256": lfs["oid"],
                        "size": lfs["size"],
                        "pointerSize": lfs["pointerSize"],
                    }
        return self._replay(recorded, info)

    def _tree(self, rev: str, base: str, query: dict[str, str]) -> web.StreamResponse:
        if self._rev(rev) is None:
            return self._missing_revision(rev)
        dirs = {e["path"] for e in self.tree if e["type"] == "directory"}
        if base and base not in dirs:
            message = f'{base} does not exist on "{rev}"'
            return self._replay(
                self.recorded[("GET", f"/api/models/{self.repo}/tree/main/does-not-exist")],
                {"error": message},
                **{"X-Error-Message": message},
            )
        recursive = query.get("recursive") == "true"
        prefix = f"{base}/" if base else ""
        entries = [
            e
            for e in self.tree
            if e["path"].startswith(prefix) and (recursive or "/" not in e["path"][len(prefix) :])
        ]
        if query.get("expand") != "true":
            keys = ("type", "oid", "size", "lfs", "xetHash", "path")
            entries = [{k: e[k] for k in keys if k in e} for e in entries]
        return self._replay(self.recorded[("GET", f"/api/models/{self.repo}/tree/main")], entries)

    def _resolve(self, repo: str, rev: str, path: str) -> web.StreamResponse:
        if repo != self.repo:
            return self._replay(self.recorded[("GET", "/api/models/wzshiming/does-not-exist")])
        if self._rev(rev) is None:
            return self._missing_revision(rev)
        entry = self.files.get(path)
        if entry is None:
            return self._replay(
                self.recorded[("GET", f"/{self.repo}/resolve/main/does-not-exist.txt")]
            )
        if "lfs" not in entry:
            recorded = self.recorded[("GET", f"/{self.repo}/resolve/main/config.json")]
            asked = quote(f"/{self.repo}/resolve/{rev}/{path}", safe="")
            etag = quote(f'"{entry["oid"]}"', safe="")
            location = (
                f"/api/resolve-cache/models/{self.repo}/{self.commit}/{quote(path)}"
                f"?{asked}=&etag={etag}"
            )
            return self._replay(
                recorded, "", Location=location, **{"X-Linked-Etag": f'"{entry["oid"]}"'}
            )
        recorded = self.recorded[("GET", f"/{self.repo}/resolve/main/64-8bits.tflite")]
        recorded_location = recorded["response"]["headers"]["Location"]
        cdn = urlsplit(recorded_location)
        bridge = cdn.path.rsplit("/", 1)[0]
        location = f"{self.cdn_endpoint}{bridge}/{entry['xetHash']}?{cdn.query}"
        xet_link = recorded["response"]["headers"]["Link"].replace(
            "f39b58dcd1ec07aaa95eb0c2f827a00dfac2404728b60d273ab3687f73311e03", entry["xetHash"]
        )
        return self._replay(
            recorded,
            f"Found. Redirecting to {location}",
            Location=location,
            Link=xet_link,
            **{
                "X-Linked-Etag": f'"{entry["lfs"]["oid"]}"',
                "X-Linked-Size": str(entry["size"]),
                "X-Xet-Hash": entry["xetHash"],
            },
        )

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, f"cdn:{request.path_qs}"))
        xet = request.path.rsplit("/", 1)[-1]
        path = next((p for p, e in self.files.items() if e.get("xetHash") == xet), None)
        if path is None:
            return web.Response(status=403, text="AccessDenied")
        return await self._file(request, path, cdn=True)

    async def _file(self, request: web.Request, path: str, *, cdn: bool) -> web.StreamResponse:
        """The generated bytes of ``path``, whole or one range, with the recorded headers."""
        entry = self.files.get(path)
        if entry is None:
            return web.Response(status=404, text="Entry not found")
        name = "models.resolve.lfs" if cdn else "models.resolve.config"
        headers = dict(load(name)["final"]["headers"])
        headers["Content-Disposition"] = headers["Content-Disposition"].replace(
            "64-8bits.tflite" if cdn else "config.json", path.rsplit("/", 1)[-1]
        )
        headers["Etag"] = f'"{entry["xetHash"] if cdn else entry["oid"]}"'
        size = entry["size"]
        lo, hi, status = 0, size, 200
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if match:
            lo = int(match[1])
            hi = min(size, int(match[2]) + 1) if match[2] else size
            status = 206
            headers["Content-Range"] = f"bytes {lo}-{hi - 1}/{size}"
        headers["Content-Length"] = str(hi - lo)
        response = web.StreamResponse(status=status, headers=headers)
        await response.prepare(request)
        if request.method != "HEAD":
            for piece in generated(path, lo, hi):
                await response.write(piece)
        await response.write_eof()
        return response
