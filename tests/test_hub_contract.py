"""hubd's Hub API against recordings of the real huggingface.co (tests/recordings/hub-contract).

Each recording is one request to the Hub about ``wzshiming/gpt2`` and its answer. The same
request, about a repo hubd holds (mirrored from the fake Hub: a small file, LFS weights and a
file in a directory, like gpt2's), is asked of hubd's app; status, ``X-Error-Code``, the
headers clients read, and the JSON keys (recursively: the keys of objects, the union of list
elements' keys) must be the recording's. The keys hubd deliberately sends differently are
listed below, each with its reason; anything else that differs fails.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import MODEL
from support.fakehub import FakeHub
from support.modelgen import tiny_model_files
from test_server import serving

from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

RECORDINGS = Path(__file__).parent / "recordings"
HUB_REPO = "wzshiming/gpt2"
HUB_LFS_FILE = "64-8bits.tflite"
LFS_FILE = "model-00001-of-00002.safetensors"
NESTED = "onnx/decoder.onnx"

# Keys of the Hub's answers hubd does not send (nor anything under them), and why. A path is
# dotted, ``[]`` an element.
NOT_SENT = {
    # Xet is the Hub's own storage protocol; hubd serves plain HTTP bytes (never a Xet hint).
    "[].xetHash": "Xet storage, which hubd does not speak",
    # hubd's audit scans files (`hubd audit`), but not with the Hub's scanners or report links.
    "[].securityFileStatus": "the Hub's malware and pickle scanners' reports",
    # Counters hubd cannot know; left out rather than invented.
    "likes": "a Hub popularity counter hubd cannot know",
    "downloads": "a Hub popularity counter hubd cannot know",
    "spaces": "Hub Spaces using the model: hubd hosts no Spaces",
    "usedStorage": "the Hub's storage accounting across all revisions and LFS history",
    # Derived from the weights' or card's contents (safetensors: asked with expand).
    "model-index": "parsed eval results from the card",
    "safetensors": "parameter counts from every safetensors header",
    # hubd records no git commits, only the revisions it mirrored: no authors ([] is sent).
    "[].authors[]": "commit authors: hubd records no git commits, only revisions",
}
# Keys hubd sends that these recordings lack, and why.
EXTRA = {
    "siblings[].size": "as the Hub sends with ?blobs=true, so hubd peers need one request",
    "siblings[].blobId": "as the Hub sends with ?blobs=true",
    "siblings[].lfs": "as the Hub sends with ?blobs=true",
    "code": "hubd's error bodies repeat X-Error-Code",
    "pipeline_tag": "sent where the card has it (this copy of gpt2's card has none)",
    "library_name": "sent where the card has it (this copy of gpt2's card has none)",
}
# Objects whose keys are the repo's own (card metadata, model config), not the API's.
OPAQUE = ("cardData", "config.tokenizer_config")
# Answers hubd gives differently, and why: recording name -> (status, X-Error-Code).
DIFFERENT = {
    # The Hub answers an unauthenticated caller 401 (no code) for a missing repo, hiding
    # whether it exists; a hubd without auth hides nothing and answers as the Hub answers a
    # signed-in caller. An auth-required hubd answers 401 (test_auth_required_hides_repos).
    "models.notfound": (404, "RepoNotFound"),
}
# Headers clients read; each the recording has (first answer or final one) hubd must send.
CLIENT_HEADERS = {
    "accept-ranges",
    "content-range",
    "etag",
    "link",
    "x-error-code",
    "x-error-message",
    "x-linked-etag",
    "x-linked-size",
    "x-repo-commit",
    "x-total-count",
}
# Every per-repo model endpoint recorded (the listing and the Xet token are tested elsewhere or
# not served: docs/hub-api.md).
NAMES = [
    "models.commits",
    "models.commits.limit",
    "models.info",
    "models.notfound",
    "models.paths-info",
    "models.refs",
    "models.resolve.config",
    "models.resolve.config.head",
    "models.resolve.lfs",
    "models.resolve.lfs.head",
    "models.resolve.notfound",
    "models.revision",
    "models.revision.notfound",
    "models.tree",
    "models.tree.notfound",
    "models.tree.recursive",
    "models.treesize",
]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """Like conftest's, with LFS from 1 KiB (gpt2's weights are LFS) and a nested file."""
    fake = FakeHub(lfs_threshold=1024)
    files = {**tiny_model_files(seed=0), NESTED: b"\x08\x07" * 600}
    fake.add_repo(MODEL, files)
    with fake:
        yield fake


@pytest.fixture
def hubd_url(ctx: Context, hub: FakeHub) -> Iterator[str]:
    asyncio.run(mirror(ctx, RepoRef.parse(MODEL)))
    with serving(ctx) as url:
        yield url


def recording(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return data


def ask(url: str, recorded: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """The recorded request, about hubd's repo instead of the Hub's."""
    request = recorded["request"]

    def ours(text: str) -> str:
        return text.replace(HUB_REPO, MODEL).replace(HUB_LFS_FILE, LFS_FILE)

    body = request.get("body")
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request(
        request["method"],
        ours(request["path"]),
        body=ours(body).encode() if body else None,
        headers=request.get("headers", {}),
    )
    response = conn.getresponse()
    headers = {k.lower(): v for k, v in response.getheaders()}
    return response.status, headers, response.read()


def key_paths(value: Any, at: str = "") -> set[str]:
    """Every key path of a JSON value: ``a.b`` for objects, ``a[]`` for a list's elements."""
    paths: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{at}.{key}" if at else key
            paths.add(path)
            if path not in OPAQUE:
                paths |= key_paths(item, path)
    elif isinstance(value, list):
        for item in value:
            paths |= key_paths(item, f"{at}[]")
    return paths


def under(path: str, listed: dict[str, str]) -> bool:
    """Whether ``path`` or an object or list it lies in is listed."""
    return any(path == key or path.startswith((f"{key}.", f"{key}[]")) for key in listed)


def expected(recorded: dict[str, Any]) -> tuple[int, str | None, dict[str, str]]:
    """(status, error code, headers) a client ends up with: redirects followed, as hubd
    answers in one hop; the first answer's headers count too (X-Linked-* ride the redirect)."""
    first = recorded["response"]
    final = recorded.get("final", first)
    headers = {k.lower(): v for k, v in {**first["headers"], **final["headers"]}.items()}
    return final["status"], headers.get("x-error-code"), headers


@pytest.mark.parametrize("name", NAMES)
def test_hubd_answers_as_the_hub(hubd_url: str, name: str) -> None:
    recorded = recording(name)
    status, headers, body = ask(hubd_url, recorded)
    want_status, want_code, want_headers = expected(recorded)
    assert (status, headers.get("x-error-code")) == DIFFERENT.get(name, (want_status, want_code))
    assert not [h for h in headers if h.startswith("x-xet")] and b"xetHash" not in body
    file = recorded["request"]["file"] and want_status == 200
    for header in CLIENT_HEADERS & set(want_headers):
        if header == "etag" and not file:
            continue  # the Hub's weak ETags of JSON answers: no client reads them
        if header == "link" and file:
            continue  # rel="xet-auth": Xet, which hubd does not speak
        if header == "x-error-code" and name in DIFFERENT:
            continue
        assert header in headers, (name, header)
    if file:
        linked = want_headers["x-linked-etag"].strip('"')
        assert headers["etag"] == headers["x-linked-etag"]
        assert re.fullmatch(f'"[0-9a-f]{{{len(linked)}}}"', headers["etag"]), name
        return
    recorded_json = (recorded.get("final") or recorded["response"]).get("json")
    if recorded_json is None:  # a download's answer: its body is not recorded
        assert recorded["request"]["file"], name
        return
    ours = json.loads(body) if body else None
    assert type(ours) is type(recorded_json), name
    missing = {p for p in key_paths(recorded_json) - key_paths(ours) if not under(p, NOT_SENT)}
    extra = {p for p in key_paths(ours) - key_paths(recorded_json) if not under(p, EXTRA)}
    assert (missing, extra) == (set(), set()), name


def test_auth_required_hides_repos(ctx: Context, hub: FakeHub) -> None:
    """Without a token, an auth-required hubd answers the Hub's 401 for a repo, with
    RepoNotFound (huggingface_hub maps a code-less 401 to it only for https endpoints)."""
    guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
    with serving(guarded) as url:
        recorded = recording("models.notfound")
        status, headers, _ = ask(url, recorded)
        assert status == recorded["response"]["status"] == 401
        assert headers["x-error-code"] == "RepoNotFound" and headers["x-error-message"]
        assert headers["www-authenticate"].startswith("Bearer realm=")
