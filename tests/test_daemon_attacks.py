"""The daemon against hostile clients: bad Ranges, planted symlinks, hostile job bodies, floods.

Each test talks HTTP to a real server on 127.0.0.1: the app in a thread (``serving``) where the
middleware decides, a `hubd daemon` process where the connection handling does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import MODEL
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import serving

from hubd.catalog.nodes import register_node
from hubd.catalog.revisions import get_repo
from hubd.cluster.tokens import create_token
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef
from hubd.sources.registry import add_peer

CONFIG = tiny_model_files(seed=0)["config.json"]
Answer = tuple[int, dict[str, str], bytes]


def call(
    url: str,
    path: str,
    method: str = "GET",
    headers: Mapping[str, str | bytes] | None = None,
    body: bytes | None = None,
) -> Answer:
    """(status, lower-cased headers, body) of one request on its own connection."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def served_bytes(url: str) -> int:
    _, _, text = call(url, "/metrics")
    (line,) = [x for x in text.decode().splitlines() if x.startswith("hubd_bytes_served_total ")]
    return int(line.split()[1])


def blob_of(ctx: Context, path: str) -> tuple[str, int]:
    """(sha256, size) of one file of the mirrored model."""
    with ctx.catalog() as session:
        (revision,) = get_repo(session, MODEL).revisions
        (match,) = [f for f in revision.files if f.path == path]
        return match.sha256, match.size


@pytest.fixture
def served(ctx: Context, hub: FakeHub) -> Iterator[str]:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    with serving(ctx) as url:
        yield url


MALFORMED_RANGES: list[str | bytes] = [
    "bytes=5-2",
    "bytes=0-1,3-4",
    "abc",
    "--1",
    "1-2-3",
    "items=0-1",
    "bytes= 0-1",
    "bytes=-",
    "bytes=-0",
    "bytes=" + ",".join(f"{i}-{i}" for i in range(500)),
    "bytes=0-" + "9" * 5000,
    "bytes=١-٢".encode(),  # noqa: RUF001 - Arabic-Indic digits: int() takes them, HTTP does not
]


@pytest.mark.parametrize("route", ["resolve", "blob"])
def test_malformed_range_is_416_json_on_get_and_head(served: str, ctx: Context, route: str) -> None:
    sha256, size = blob_of(ctx, "config.json")
    path = (
        f"/{MODEL}/resolve/main/config.json" if route == "resolve" else f"/api/hubd/blobs/{sha256}"
    )
    for value in MALFORMED_RANGES:
        for method in ("GET", "HEAD"):
            status, headers, body = call(served, path, method, {"Range": value})
            assert status == 416, (value, method, status, body)
            assert headers["x-error-code"] == "RangeNotSatisfiable" and headers["x-error-message"]
            assert headers["content-range"] == f"bytes */{size}"
            if method == "GET":
                assert json.loads(body)["code"] == "RangeNotSatisfiable"


def test_valid_ranges_still_served(served: str) -> None:
    path = f"/{MODEL}/resolve/main/config.json"
    size = len(CONFIG)
    for value, part in [
        ("bytes=0-4", CONFIG[:5]),
        ("bytes=-5", CONFIG[-5:]),
        ("bytes=5-", CONFIG[5:]),
        ("bytes=0-0", CONFIG[:1]),
        (f"bytes={size - 1}-{size - 1}", CONFIG[-1:]),
        ("bytes=2-99999999999", CONFIG[2:]),
        ("bytes=-99999999999", CONFIG),
    ]:
        status, headers, body = call(served, path, headers={"Range": value})
        assert (status, body) == (206, part), value
        assert headers["content-length"] == str(len(part))
        head_status, head_headers, _ = call(served, path, "HEAD", {"Range": value})
        assert head_status == 206 and head_headers["content-length"] == str(len(part))
    assert call(served, path, headers={"Range": f"bytes={size}-"})[0] == 416
    status, headers, body = call(served, path)
    assert (status, body, headers["accept-ranges"]) == (200, CONFIG, "bytes")


def test_suffix_range_counts_only_the_bytes_sent(served: str) -> None:
    before = served_bytes(served)
    path = f"/{MODEL}/resolve/main/config.json"
    assert call(served, path, headers={"Range": "bytes=-99999999999"})[2] == CONFIG
    assert call(served, path, headers={"Range": "bytes=-3"})[2] == CONFIG[-3:]
    assert call(served, path, "HEAD")[0] == 200  # a HEAD sends no body: counts nothing
    assert served_bytes(served) - before == len(CONFIG) + 3


def test_planted_symlinks_are_never_served(served: str, ctx: Context, tmp_path: Path) -> None:
    sha256, size = blob_of(ctx, "config.json")
    secret = tmp_path / "node.key"
    secret.write_bytes(b"-----BEGIN PRIVATE KEY-----".ljust(size, b"k"))
    known = ctx.store.blob_path(sha256)
    known.unlink()
    known.symlink_to(secret)  # the size matches: only refusing symlinks keeps the key in
    unknown = ctx.store.blob_path("a" * 64)
    unknown.parent.mkdir(parents=True, exist_ok=True)
    unknown.symlink_to(secret)  # what a traversal commit from a hostile upstream leaves
    for path, refusals in (
        (f"/api/hubd/blobs/{sha256}", {404}),
        (f"/api/hubd/blobs/{'a' * 64}", {404}),
        # 503 BlobUnavailable where the store counts a link as no blob and asks other nodes
        (f"/{MODEL}/resolve/main/config.json", {404, 503}),
    ):
        for method in ("GET", "HEAD"):
            status, headers, body = call(served, path, method)
            assert status in refusals, (path, method, status)
            assert b"PRIVATE" not in body and headers["x-error-code"]
    for bad in ("A" * 64, "a" * 63, "../" + "a" * 61):
        assert call(served, f"/api/hubd/blobs/{bad}")[0] in (400, 404)


def test_blobs_are_served_only_if_the_catalog_records_them(
    served: str, ctx: Context, tmp_path: Path
) -> None:
    stray = b"not in any revision"
    digest = hashlib.sha256(stray).hexdigest()
    path = ctx.store.blob_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stray)  # a regular file, but no verified revision holds it
    assert call(served, f"/api/hubd/blobs/{digest}")[0] == 404
    sha256, _ = blob_of(ctx, "config.json")
    status, _, body = call(served, f"/api/hubd/blobs/{sha256}")
    assert (status, body) == (200, CONFIG)


def post_job(url: str, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    headers = {"Content-Type": "application/json", **(headers or {})}
    return call(url, "/api/hubd/jobs", "POST", headers, body)


def test_deeply_nested_job_body_is_400(served: str) -> None:
    deep = b'{"repo": "a/b", "include": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    status, headers, body = post_job(served, deep)
    assert status == 400 and json.loads(body)["code"] == "InvalidRequest"
    assert headers["x-error-code"] == "InvalidRequest"


@pytest.mark.parametrize(
    "since",
    ["0001-01-01", "0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-23:59", "garbage", ""],
)
def test_catalog_since_out_of_range_is_400(served: str, since: str) -> None:
    status, _, body = call(served, f"/api/hubd/catalog?since={since}")
    assert status == 400 and "since" in json.loads(body)["error"]


def test_catalog_since_in_range_pages(served: str) -> None:
    status, _, body = call(served, "/api/hubd/catalog?since=2000-01-01")
    assert status == 200 and len(json.loads(body)["revisions"]) == 1
    cursor = json.loads(body)["next"].replace("+", "%2B")
    status, _, body = call(served, f"/api/hubd/catalog?since={cursor}")
    assert status == 200 and json.loads(body)["revisions"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"repo": "acme/x", "include": 5}', "include"),
        (b'{"repo": "acme/x", "include": [[1, 2]]}', "include"),
        (b'{"repo": "acme/x", "exclude": [7]}', "exclude"),
        (b'{"repo": "acme/x", "include": NaN}', "NaN"),
        (b'{"repo": "acme/x", "include": [Infinity]}', "Infinity"),
        (b'{"repo": "acme/x", "with_base": "yes"}', "with_base"),
        (b'{"repo": "acme/x", "with_base": 1}', "with_base"),
        (b'{"repo": "acme/x", "from": 7}', "from"),
        (b'{"repo": "acme/x", "from": {}}', "from"),
        (b'{"repo": "acme/x", "rm_rf": true}', "rm_rf"),
        (b'{"repo": 5}', "repo"),
        (b'{"repo": "../etc"}', "repo"),
        (b'{"include": ["*"]}', "repo"),
        (b"[]", "repo"),
    ],
)
def test_job_requests_are_typed(served: str, body: bytes, field: str) -> None:
    status, headers, answer = post_job(served, body)
    assert status == 400, answer
    assert field in json.loads(answer)["error"] and headers["x-error-code"] == "InvalidRequest"
    status, _, jobs = call(served, "/api/hubd/jobs")
    assert status == 200 and json.loads(jobs)["jobs"] == []


def test_a_well_typed_job_is_queued(served: str) -> None:
    body = {"repo": MODEL, "include": ["*.json"], "exclude": [], "with_base": False}
    status, _, answer = post_job(served, json.dumps(body).encode())
    assert status == 202 and json.loads(answer)["options"]["include"] == ["*.json"]
    status, _, answer = post_job(served, json.dumps({"repo": MODEL, "from": None}).encode())
    assert status == 202


def test_job_sources_are_peers_or_nodes(served: str, ctx: Context, hub: FakeHub) -> None:
    def submit(source: str) -> int:
        return post_job(served, json.dumps({"repo": MODEL, "from": source}).encode())[0]

    assert submit("http://127.0.0.1:1") == 403
    assert submit("http://169.254.169.254/latest/meta-data") == 403
    assert submit("file:///etc/passwd") == 400
    assert submit("upstream") == 400  # not a peer's name: taken for a URL, and not one
    add_peer(ctx, "upstream", hub.endpoint)
    assert submit("upstream") == 202
    assert submit(hub.endpoint + "/") == 202
    with ctx.catalog.begin() as session:
        register_node(session, "sibling", "http://127.0.0.1:9")
    assert submit("http://127.0.0.1:9") == 202


def test_errors_carry_the_hubs_headers(served: str, ctx: Context) -> None:
    for method, path, status in [
        ("GET", f"/{MODEL}/resolve/main/missing.json", 404),
        ("HEAD", f"/{MODEL}/resolve/main/missing.json", 404),
        ("HEAD", "/acme/nothing/resolve/main/x", 404),
        ("GET", "/no/such/route/at/all", 404),
        ("POST", "/healthz", 405),
        ("GET", "/api/hubd/jobs/x", 400),
        ("HEAD", "/api/hubd/catalog?since=0001-01-01", 400),
    ]:
        got, headers, body = call(served, path, method)
        assert got == status, (method, path, got)
        assert headers["x-error-code"] and headers["x-error-message"], (method, path)
        if method == "GET":
            assert json.loads(body)["error"]
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    _, reader = create_token(guarded, "read")
    with serving(guarded) as url:
        for method in ("GET", "HEAD"):
            for credentials in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
                got, headers, _ = call(url, f"/api/models/{MODEL}", method, credentials)
                assert got == 401
                assert headers["www-authenticate"] == 'Bearer realm="hubd"'
                code = "AccessDenied" if credentials else "RepoNotFound"  # as the Hub's 401
                assert headers["x-error-code"] == code and headers["x-error-message"]
        got, headers, _ = post_job(url, b'{"repo": "a/b"}', {"Authorization": f"Bearer {reader}"})
        assert got == 403 and "www-authenticate" not in headers and headers["x-error-message"]


# --- the daemon process: what reaches aiohttp's connection handling before any middleware ---

DAEMON = """
import asyncio, os, sys
from hubd.config import load_settings
from hubd.context import Context
from hubd.daemon import run_daemon

url_file, hog = sys.argv[1], sys.argv[2] == "hog"
held = []

def ready(url):
    if hog:  # leave the daemon almost no descriptors: accept() meets EMFILE
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            for fd in held[:12]:
                os.close(fd)
    with open(url_file + ".tmp", "w") as f:
        f.write(url)
    os.replace(url_file + ".tmp", url_file)

asyncio.run(run_daemon(Context.open(load_settings()), "127.0.0.1", 0, ready, idle_timeout=1.0))
"""


class Daemon:
    """A daemon process on this test's home, its stderr in a file (a pipe could fill and block).

    ``{url}`` in ``argv`` is the file the daemon writes its URL to when ready.
    """

    def __init__(self, home: Path, argv: list[str], fds: int | None = None) -> None:
        url_file, self.log = home.parent / "daemon-url", home.parent / "daemon.log"

        def limit() -> None:
            if fds is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (fds, fds))

        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *(a.replace("{url}", str(url_file)) for a in argv)],
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=limit,
                env={**os.environ, "HUBD_JOBS_POLL": "0.5"},
            )
        deadline = time.monotonic() + 20
        while not url_file.exists():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        self.url = url_file.read_text()
        self.port = urlsplit(self.url).port or 0

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def raw_request(port: int, data: bytes) -> bytes:
    """What the server answers to these bytes, read until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(chunks)


def answer_of(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [line.split(": ", 1) for line in header_lines]
    headers = {name.lower(): value for name, value in pairs}
    return int(status_line.split()[1]), headers, body


@pytest.mark.slow
def test_oversized_requests_get_json_and_log_no_traceback(home: Path) -> None:
    daemon = Daemon(home, ["-m", "hubd.cli.main", "daemon", "--port", "0", "--url-file", "{url}"])
    try:
        hostile = [
            b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nAuthorization: Bearer " + b"c" * 100_000 + b"\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n"
            + b"".join(b"X-H%d: v\r\n" % i for i in range(200))
            + b"\r\n",
            b"GET /healthz HTTP/1.1\r\n" + b"X-H: v\r\n" * 1000 + b"\r\n",
            b"NOT HTTP AT ALL\r\n\r\n",
        ]
        for _ in range(20):
            for data in hostile:
                status, headers, body = answer_of(raw_request(daemon.port, data))
                assert status == 400, data[:60]
                assert json.loads(body)["code"] == headers["x-error-code"] == "BadRequest"
                assert headers["x-error-message"]
        assert call(daemon.url, "/healthz")[0] == 200
    finally:
        daemon.stop()
    lines = daemon.lines()
    assert not any("Traceback" in line for line in lines), "\n".join(lines[:40])
    assert len(lines) <= 5, "\n".join(lines[:40])


def open_idle(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that never send a byte (raising this process's own fd limit first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]


def healthz_within(url: str, seconds: float) -> float:
    """Seconds until /healthz answers 200 (a 503 or a dropped connection meanwhile is fine)."""
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if call(url, "/healthz")[0] == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"/healthz did not answer within {seconds} s")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_idle_connections_do_not_exhaust_descriptors(home: Path) -> None:
    daemon = Daemon(home, ["-c", DAEMON, "{url}", "-"], fds=256)
    try:
        idle = open_idle(daemon.port, 300)
        for sock in idle[:10]:  # slow headers: a request line, then nothing more
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            healthz_within(daemon.url, 8)
            answers = []
            for sock in idle:  # refused at once (503) or closed once idle for a second
                sock.settimeout(8)
                answers.append(b"".join(iter(lambda s=sock: s.recv(1 << 16), b"")))
            assert answers[:10] == [b""] * 10  # closed unanswered once their second was up
            refused = [answer_of(a) for a in answers if a]
            assert refused and all(status == 503 for status, _, _ in refused)
            assert {json.loads(body)["code"] for _, _, body in refused} == {"ServiceUnavailable"}
            start = time.monotonic()
            assert call(daemon.url, "/healthz")[0] == 200 and time.monotonic() - start < 1
        finally:
            for sock in idle:
                sock.close()
    finally:
        daemon.stop()
    lines = daemon.lines()
    assert len(lines) <= 5 and not any("Traceback" in x for x in lines), "\n".join(lines[:40])


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_accept_errors_are_logged_once_not_per_attempt(home: Path) -> None:
    daemon = Daemon(home, ["-c", DAEMON, "{url}", "hog"], fds=256)
    try:
        idle = open_idle(daemon.port, 100)  # far more than the descriptors left
        try:
            time.sleep(3)  # accept() fails, again and again
        finally:
            for sock in idle:
                sock.close()
        healthz_within(daemon.url, 8)
    finally:
        daemon.stop()
    lines = daemon.lines()
    assert len(lines) <= 5 and not any("Traceback" in x for x in lines), "\n".join(lines[:40])
    assert any("cannot accept connections" in x for x in lines), lines


def test_deployments_raise_the_descriptor_limit() -> None:
    deploy = Path(__file__).parent.parent / "deploy"
    assert "\nLimitNOFILE=65536\n" in (deploy / "hubd.service").read_text()
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    for name in ("hubd-a", "hubd-b"):
        assert compose["services"][name]["ulimits"]["nofile"] == {"soft": 65536, "hard": 65536}
