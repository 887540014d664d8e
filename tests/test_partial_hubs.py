"""hubd mirror from Hub implementations that say less than huggingface.co.

Olah 0.5.4's model info lists file names only, even with ``?blobs=true``; its recursive tree has
what hubd needs (``size``, ``oid``, ``lfs: {oid, size}``). :class:`OlahLike` answers exactly so,
with the tree paginated (``Link: rel="next"``) and behind a redirect, as a fronting proxy may put
it. Olah itself is not started here: it needs a network upstream or a prepared git mirror.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Result

from hubd.errors import UpstreamError
from hubd.sources.modelinfo import declared_files, parse_model_info, parse_tree_page

COMMIT = "0123456789abcdef0123456789abcdef01234567"
FILES = {
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": b"---\nlicense: apache-2.0\n---\n# x\n",
    "config.json": b'{"model_type": "llama"}\n',
    "sub/tokenizer.json": b'{"version": "1.0"}\n',
    "model.safetensors": bytes(range(256)) * 64,
}
LFS = {"model.safetensors"}


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    )


def tree_entry(path: str, data: bytes) -> dict[str, Any]:
    """An entry as Olah's tree lists it."""
    if path in LFS:
        lfs = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
        return {"type": "file", "oid": git_oid(pointer(data)), "size": len(data), "path": path,
                "lfs": lfs}  # fmt: skip
    return {"type": "file", "oid": git_oid(data), "size": len(data), "path": path}


class OlahLike:
    """acme/x at COMMIT, answered as Olah 0.5.4 does.

    ``tree`` may be edited to make it lie; ``declared`` adds fields to a file's sibling in the
    model info, as an implementation that says some of it would.
    """

    def __init__(self, page_size: int = 2) -> None:
        self.page_size = page_size
        self.tree: list[dict[str, Any]] = [
            {"type": "directory", "oid": git_oid(b"dir"), "size": 0, "path": "sub"},
            *(tree_entry(p, d) for p, d in sorted(FILES.items())),
        ]
        self.declared: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                outer.requests.append(self.path)
                outer._answer(self)

            def do_HEAD(self) -> None:  # http.server's name
                outer.requests.append(f"HEAD {self.path}")
                outer._answer(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OlahLike:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        query = parse_qs(url.query)
        info = "/api/models/acme/x"
        if url.path in (info, f"{info}/revision/main", f"{info}/revision/{COMMIT}"):
            names = [{"rfilename": p, **self.declared.get(p, {})} for p in sorted(FILES)]
            self._send(req, 200, json.dumps({"id": "acme/x", "sha": COMMIT, "siblings": names}))
        elif url.path == f"{info}/tree/{COMMIT}":  # a proxy in front moves the tree
            self._send(req, 307, "", {"Location": f"/olah{url.path}?{url.query}"})
        elif url.path == f"/olah{info}/tree/{COMMIT}" and query.get("recursive") == ["true"]:
            cursor = int(query.get("cursor", ["0"])[0])
            page = self.tree[cursor : cursor + self.page_size]
            headers = {}
            if cursor + self.page_size < len(self.tree):
                following = (
                    f"{self.endpoint}{url.path}?recursive=true&cursor={cursor + self.page_size}"
                )
                headers["Link"] = f'<{following}>; rel="next"'
            self._send(req, 200, json.dumps(page), headers)
        elif url.path.startswith(f"/acme/x/resolve/{COMMIT}/"):
            data = FILES.get(url.path.removeprefix(f"/acme/x/resolve/{COMMIT}/"))
            if data is None:
                self._send(req, 404, "Entry not found", {"X-Error-Code": "EntryNotFound"})
            else:
                self._send(req, 200, data, {"ETag": f'"{git_oid(data)}"'})
        elif url.path == "/api/models/acme/missing/revision/main":
            self._send(req, 404, '{"error": "Repository not found"}',
                       {"X-Error-Code": "RepoNotFound"})  # fmt: skip
        elif url.path == "/api/models/acme/x-bad-token/revision/main":
            message = "Invalid credentials in Authorization header"
            self._send(req, 401, json.dumps({"error": message}), {"X-Error-Message": message})
        else:
            self._send(req, 404, "Not Found")

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: str | bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        req.send_response(status)
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if req.command == "GET":
            req.wfile.write(data)


@pytest.fixture
def olah(home: Path) -> Iterator[OlahLike]:
    with OlahLike() as server:
        yield server


def test_names_only_model_info_is_completed_from_the_paged_redirected_tree(
    olah: OlahLike, hubd: Callable[..., Result], home: Path
) -> None:
    result = hubd("mirror", "acme/x@main", "--endpoint", olah.endpoint, "--json")

    out = result.json()
    assert out["commit"] == COMMIT and out["files"] == len(FILES)
    snapshot = Path(out["snapshot"])
    assert {p: (snapshot / p).read_bytes() for p in FILES} == FILES
    assert hubd("verify", "acme/x").code == 0
    pages = [r for r in olah.requests if r.startswith(f"/olah/api/models/acme/x/tree/{COMMIT}")]
    assert len(pages) == 3  # 6 entries, 2 a page: every Link followed, after the redirect


def test_resolve_asks_the_revision_main_without_one(
    olah: OlahLike, hubd: Callable[..., Result]
) -> None:
    assert hubd("mirror", "acme/x", "--endpoint", olah.endpoint, "-q").code == 0
    assert olah.requests[0] == "/api/models/acme/x/revision/main?blobs=true"


@pytest.mark.parametrize(
    ("field", "lie"),
    [
        ("size", lambda e: e | {"size": e["size"] + 1, "lfs": e["lfs"] | {"size": e["size"] + 1}}),
        ("blobId", lambda e: e | {"oid": "f" * 40}),
        ("lfs.sha256", lambda e: e | {"lfs": {"oid": "e" * 64, "size": e["size"]}}),
    ],
)
def test_tree_that_disagrees_with_the_model_info_is_refused(
    field: str, lie: Callable[[dict[str, Any]], dict[str, Any]]
) -> None:
    """What the model info does say must be what the tree says (a parse, no server needed)."""
    data = FILES["model.safetensors"]
    entry = tree_entry("model.safetensors", data)
    sibling = {
        "rfilename": "model.safetensors",
        "size": len(data),
        "blobId": entry["oid"],
        "lfs": {"sha256": entry["lfs"]["oid"], "size": len(data)},
    }
    info = parse_model_info(json.dumps({"sha": COMMIT, "siblings": [sibling]}).encode(), "h", "a/x")
    tree = parse_tree_page(json.dumps([lie(entry)]).encode(), "h", "a/x")
    with pytest.raises(UpstreamError, match=rf"model\.safetensors \(.*{field}"):
        declared_files(info, "h", tree)


def test_tree_that_disagrees_fails_the_mirror_naming_the_file(
    olah: OlahLike, hubd: Callable[..., Result], home: Path
) -> None:
    olah.declared["config.json"] = {"size": len(FILES["config.json"])}  # a size, no digest
    olah.tree = [e | {"size": 3} if e["path"] == "config.json" else e for e in olah.tree]

    result = hubd("mirror", "acme/x@main", "--endpoint", olah.endpoint)

    assert result.code == 5, result.err
    assert "tree disagrees with its model info about config.json (size)" in result.err
    assert not (home / "store" / "snapshots" / "acme" / "x").exists()


def test_a_file_the_tree_leaves_without_a_digest_is_refused(
    olah: OlahLike, hubd: Callable[..., Result]
) -> None:
    olah.tree = [e for e in olah.tree if e["path"] != "config.json"]

    result = hubd("mirror", "acme/x@main", "--endpoint", olah.endpoint)

    assert result.code == 5, result.err
    assert "did not declare the size of config.json" in result.err


def test_a_tree_that_fails_keeps_the_model_infos_complaint(
    olah: OlahLike, hubd: Callable[..., Result]
) -> None:
    olah.tree = [{"type": "file", "path": "config.json", "oid": "../../etc", "size": 1}]

    result = hubd("mirror", "acme/x@main", "--endpoint", olah.endpoint)

    assert result.code == 5, result.err
    assert "did not declare the size of .gitattributes; nor does its tree" in result.err
    assert "oid" in result.err and "Traceback" not in result.err


def test_a_next_page_on_another_host_is_refused(
    olah: OlahLike, hubd: Callable[..., Result]
) -> None:
    endpoint = olah.endpoint
    olah.endpoint = endpoint.replace("127.0.0.1", "localhost")  # what its links name

    result = hubd("mirror", "acme/x@main", "--endpoint", endpoint)

    assert result.code == 5, result.err
    assert "not a new page on this endpoint" in result.err


def test_a_401_for_a_bad_token_is_access_denied_not_a_missing_repo(
    olah: OlahLike, hubd: Callable[..., Result]
) -> None:
    result = hubd("mirror", "acme/x-bad-token", "--endpoint", olah.endpoint)

    assert result.code == 4, result.err
    assert "access denied" in result.err and "not found" not in result.err
