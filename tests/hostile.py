"""A malicious Hugging Face-compatible upstream, and a store checker, sharing no hubd code.

``HostileHub`` serves, per repo, whatever model info body a test gives it (any JSON, or raw
bytes) and whatever bytes it is told to serve for each file name, from ``http.server`` on
127.0.0.1. Nothing in it trusts or imports hubd: a bug that hubd's own fake would share cannot
hide here.

``check_store`` reads the store and the SQLite catalog directly and asserts the invariants a
crash must never break (SECURITY-FINDINGS, "Crash invariants").
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def sibling(path: str, data: bytes, *, as_lfs: bool = False, **override: Any) -> dict[str, Any]:
    """An honest sibling entry for ``data``; ``override`` replaces or removes (None) fields."""
    entry: dict[str, Any] = {"rfilename": path, "size": len(data), "blobId": git_oid(data)}
    if as_lfs:
        entry["lfs"] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "pointerSize": 130,
        }
    for key, value in override.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


@dataclass
class Scenario:
    info: Any  # a JSON value, or bytes sent as they are
    files: dict[str, bytes] = field(default_factory=dict)  # by the URL's last path part
    requests: list[dict[str, str]] = field(default_factory=list)


def honest(files: dict[str, bytes], commit: str = COMMIT, **info: Any) -> Scenario:
    return Scenario(
        {"id": "x/y", "sha": commit, "siblings": [sibling(p, d) for p, d in files.items()]} | info,
        {p.rsplit("/", 1)[-1]: d for p, d in files.items()},
    )


class HostileHub:
    """Serves ``scenarios[repo_id]`` for model info and resolve; 404 for anything else."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Scenario] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's name
                hub._answer(self)

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, req: BaseHTTPRequestHandler) -> None:
        path = unquote(urlsplit(req.path).path)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            scenario = self.scenarios.get(f"{parts[2]}/{parts[3]}")
            body = None
            if scenario is not None:
                scenario.requests.append(dict(req.headers))
                info = scenario.info
                body = info if isinstance(info, bytes) else json.dumps(info).encode()
            self._send(req, body, "application/json")
            return
        scenario = self.scenarios.get("/".join(parts[:2]))
        data = scenario.files.get(parts[-1]) if scenario is not None else None
        if scenario is not None:
            scenario.requests.append(dict(req.headers))
        self._send(req, data, "application/octet-stream")

    @staticmethod
    def _send(req: BaseHTTPRequestHandler, body: bytes | None, kind: str) -> None:
        if body is None:
            req.send_response(404)
            req.send_header("X-Error-Code", "RepoNotFound")
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        req.send_response(200)
        req.send_header("Content-Type", kind)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command == "GET":
            req.wfile.write(body)


def files_outside(root: Path, allowed: Path) -> list[Path]:
    """Every file or link under ``root`` that is not under ``allowed``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if allowed != path and allowed not in path.parents and path not in allowed.parents:
                found.append(path)
    return found


def check_store(home: Path) -> list[str]:
    """What is wrong with the store under ``home`` by the crash invariants; [] when none."""
    store, problems = home / "store", []
    blobs = store / "blobs" / "sha256"
    for path in blobs.rglob("*") if blobs.is_dir() else []:
        if path.is_symlink() or (path.is_file() and path.parent.name != path.name[:2]):
            problems.append(f"not a blob: {path}")
        elif path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() != path.name:
            problems.append(f"blob does not hash to its name: {path}")
    catalog = home / "catalog.db"
    verified: dict[tuple[str, str], dict[str, tuple[str, int]]] = {}
    refs: dict[tuple[str, str], str] = {}
    if catalog.exists():
        db = sqlite3.connect(catalog)
        for repo, commit, path, sha, size in db.execute(
            'SELECT repos.repo_id, revisions."commit", files.path, files.sha256, files.size '
            "FROM files JOIN revisions ON files.revision_pk = revisions.id "
            "JOIN repos ON revisions.repo_pk = repos.id WHERE revisions.state = 'verified'"
        ):
            verified.setdefault((repo, commit), {})[path] = (sha, size)
        for repo, name, commit in db.execute(
            'SELECT repos.repo_id, refs.name, refs."commit" FROM refs JOIN repos '
            "ON refs.repo_pk = repos.id"
        ):
            refs[(repo, name)] = commit
        db.close()
    for files in verified.values():
        for sha, size in files.values():
            blob = blobs / sha[:2] / sha
            if not blob.is_file() or blob.is_symlink() or blob.stat().st_size != size:
                problems.append(f"verified file without its blob: {sha}")
    snapshots = store / "snapshots"
    for link in snapshots.rglob("*") if snapshots.is_dir() else []:
        if link.is_dir() and not link.is_symlink():
            continue
        rel = link.relative_to(snapshots).parts
        repo, commit, path = "/".join(rel[:2]), rel[2], "/".join(rel[3:])
        declared = verified.get((repo, commit), {}).get(path)
        if declared is None:
            problems.append(f"snapshot link of no verified file: {link}")
            continue
        target = Path(os.path.normpath(link.parent / link.readlink()))
        if target != blobs / declared[0][:2] / declared[0]:
            problems.append(f"snapshot link to the wrong blob: {link} -> {target}")
    ref_dir = store / "refs"
    for ref in ref_dir.rglob("*") if ref_dir.is_dir() else []:
        if ref.is_file():
            rel = ref.relative_to(ref_dir).parts
            key = ("/".join(rel[:2]), "/".join(rel[2:]))
            if (key[0], ref.read_text().strip()) not in verified:
                problems.append(f"ref of no verified commit: {ref}")
            elif refs.get(key) != ref.read_text().strip():
                problems.append(f"ref file disagrees with the catalog: {ref}")
    return problems
