"""Interop with a real third-party mirror, Olah 0.5.4, in both directions.

Olah runs from its own virtualenv `.venv-olah` (`bash tests/olah.sh` creates it; `make test` runs
it): a missing Olah or git-lfs fails these tests, it does not skip them.

What Olah 0.5.4 answers, and what hubd must cope with as its client (seen on the wire):

* `GET /api/models/{repo}` without a revision over a local mirror with `offline = true` is
  `401 {"error":"Repository not found"}` (it looks the latest commit up upstream, even offline);
  `GET /api/models/{repo}/revision/main` is 200. hubd asks `revision/{revision or "main"}`.
* Its model info lists `siblings` as `{"rfilename"}` only: no size, no blob id, no LFS digest.
  hubd completes them from the recursive tree.
* `GET /api/models/{repo}/tree/{rev}?recursive=true` is `307` to `…/tree/{rev}/?recursive=true`
  (FastAPI's trailing-slash redirect), whose 200 carries sizes, blob ids and `lfs.oid`.
  hubd follows it.
* As a proxy it asks its upstream `HEAD …/resolve/{commit}/{path}` and records the `ETag` header
  (before `X-Linked-Etag`), then `POST …/paths-info/{commit}`, then a ranged `GET`; hubd's ETag
  must be the content etag and paths-info must exist (before issue 13 it was 405 and every
  download through Olah failed).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import MODEL, Result
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import serving

from hubd.cluster.tokens import create_token
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

pytestmark = pytest.mark.slow  # starts Olah as a subprocess

ROOT = Path(__file__).resolve().parent.parent
OLAH = ROOT / ".venv-olah" / "bin" / "olah-cli"
STARTUP_SECONDS = 30
GIT_SECONDS = 30
Hubd = Callable[..., Result]


@dataclass(frozen=True)
class Olah:
    url: str
    log: Path

    def tail(self) -> str:
        """The end of Olah's output, for failure messages."""
        return "\n--- olah log ---\n" + self.log.read_text(errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def olah(workdir: Path, upstream: str, *, mirrors: Path | None = None) -> Iterator[Olah]:
    """Olah on a loopback port with `upstream` (a base URL) as its Hub; with `mirrors`, it serves
    the git repositories under it offline and never asks the upstream."""
    if not OLAH.exists():
        pytest.fail(f"Olah is not installed ({OLAH} missing): run `bash tests/olah.sh`")
    workdir.mkdir(parents=True)
    port = free_port()
    parts = urlsplit(upstream)
    basic = {
        "host": "127.0.0.1",
        "port": port,
        "hf-scheme": parts.scheme,
        "hf-netloc": parts.netloc,
        "hf-lfs-netloc": parts.netloc,
        "repos-path": str(workdir / "repos"),
        "log-path": str(workdir / "logs"),
        "mirrors-path": [str(mirrors)] if mirrors else [],
    }
    lines = ["[basic]", *(f"{k} = {json.dumps(v)}" for k, v in basic.items())]
    lines += ["[accessibility]", f"offline = {json.dumps(mirrors is not None)}"]
    config = workdir / "olah.toml"
    config.write_text("\n".join(lines) + "\n")
    log = workdir / "olah.log"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(OLAH), "-c", str(config)], cwd=workdir, env=env, stdout=out, stderr=out
        )
    server = Olah(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"Olah exited with {proc.returncode}" + server.tail()
            assert time.monotonic() < deadline, "Olah did not listen in time" + server.tail()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=GIT_SECONDS,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"},
    )
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


def git_lfs_repo(repo: Path, files: dict[str, bytes], tag: str) -> str:
    """A git repository with the safetensors files in LFS (as on the Hub); its head commit."""
    lfs = subprocess.run(["git", "lfs", "version"], capture_output=True, timeout=GIT_SECONDS)
    if lfs.returncode:
        pytest.fail("git-lfs is not installed: run `bash tests/olah.sh`")
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "lfs", "install", "--local")
    git(repo, "lfs", "track", "*.safetensors")
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "a tiny model")
    git(repo, "tag", tag)
    tracked = sorted(line.split()[-1] for line in git(repo, "lfs", "ls-files").splitlines())
    assert tracked == sorted(n for n in files if n.endswith(".safetensors")), tracked
    return git(repo, "rev-parse", "HEAD").strip()


def test_hubd_mirrors_from_olah(tmp_path: Path, hubd: Hubd) -> None:
    """Olah serves a git+LFS repository offline; hubd mirrors it by default, branch and tag."""
    files = {**tiny_model_files(seed=5), "docs/usage.md": b"# usage\n"}  # a tree below the root
    mirrors = tmp_path / "mirrors"
    head = git_lfs_repo(mirrors / "models" / "acme" / "x", files, tag="v1")
    # Offline: Olah never asks this upstream (nothing listens on port 9).
    with olah(tmp_path / "olah", "http://127.0.0.1:9", mirrors=mirrors) as server:
        for ref in ("acme/x", "acme/x@main", "acme/x@v1"):
            result = hubd("mirror", ref, "--endpoint", server.url, "-q", "--json")
            assert result.code == 0, result.err + server.tail()
            summary = result.json()
            assert summary["commit"] == head and summary["files"] == len(files) + 1
            snapshot = Path(summary["snapshot"])
            for name, data in files.items():
                assert (snapshot / name).read_bytes() == data, name
    report = hubd("verify", "acme/x", "--json").json()
    assert report["ok"] and report["damaged"] == [] and report["blobs"] == len(files) + 1


def test_olah_uses_hubd_as_upstream(tmp_path: Path, ctx: Context, hub: FakeHub) -> None:
    """Olah proxies hubd as its Hub: snapshot_download through Olah gets hubd's bytes exactly,
    and the ETag Olah passes on is the content's (sha256 for LFS files)."""
    for ref in (MODEL, f"{MODEL}@v1.0"):
        asyncio.run(mirror(ctx, RepoRef.parse(ref)))
    files = tiny_model_files(seed=0)
    weights = "model-00001-of-00002.safetensors"
    with serving(ctx) as upstream, olah(tmp_path / "olah", upstream) as server:
        for revision in ("main", "v1.0"):
            path = snapshot_download(
                MODEL,
                revision=revision,
                endpoint=server.url,
                cache_dir=tmp_path / "hf",
                etag_timeout=10,
            )
            got = {p.relative_to(path).as_posix() for p in Path(path).rglob("*") if p.is_file()}
            assert got == set(files), server.tail()
            for name, data in files.items():
                assert (Path(path) / name).read_bytes() == data, name
        meta = get_hf_file_metadata(hf_hub_url(MODEL, weights, endpoint=server.url), timeout=10)
        assert meta.etag == hashlib.sha256(files[weights]).hexdigest()
        assert meta.commit_hash == ctx.store.get_ref(MODEL, "main")


def test_olah_passes_tokens_to_an_auth_required_hubd(
    tmp_path: Path, ctx: Context, hub: FakeHub
) -> None:
    """hubd with auth.required behind Olah: the client's token goes through to hubd; without one
    the repo is not found, also after a tokened client filled Olah's cache."""
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    _, secret = create_token(guarded, "read", "olah client")
    files = tiny_model_files(seed=0)
    with serving(guarded) as upstream, olah(tmp_path / "olah", upstream) as server:
        path = snapshot_download(
            MODEL, endpoint=server.url, token=secret, cache_dir=tmp_path / "hf", etag_timeout=10
        )
        for name, data in files.items():
            assert (Path(path) / name).read_bytes() == data, name
        commit = Path(path).name
        with pytest.raises(RepositoryNotFoundError):
            snapshot_download(
                MODEL, endpoint=server.url, cache_dir=tmp_path / "anon", etag_timeout=10
            )
        with pytest.raises(RepositoryNotFoundError):
            hf_hub_download(
                MODEL,
                "config.json",
                revision=commit,
                endpoint=server.url,
                cache_dir=tmp_path / "anon",
                etag_timeout=10,
            )
