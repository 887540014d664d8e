"""A served catalog for the web tests: generated models mirrored from a loopback Hub into a
real daemon app on loopback, one with a hostile model card, and tokens of both scopes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from support.fakehub import FakeHub
from support.modelgen import tiny_gguf_files, tiny_lora_files, tiny_model_files
from test_server import serving

from hubd.cluster.tokens import create_token
from hubd.config import load_settings
from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

BASE = "acme/tiny-llama"
LORA = "acme/tiny-llama-lora"
GGUF = "acme/tiny-llama-gguf"
RESTRICTED = "meta/tiny-llama3"
HOSTILE = "evil/hostile-card"
HOSTILE_CARD = b"""---
license: mit
---

# A card that attacks its readers

<script>alert("script")</script>
<img src="x" onerror="alert('onerror')">
<a href="javascript:alert('link')">click me</a>
[markdown link](javascript:alert('md'))
<svg><script>alert('svg')</script></svg>
<iframe src="javascript:alert('frame')"></iframe>
<p onclick="alert('click')" style="background:url(javascript:alert('css'))">styled</p>
"""


@dataclass(frozen=True)
class Catalog:
    url: str  # the daemon, auth not required
    guarded: str  # the same catalog, auth.required
    read_token: str
    write_token: str
    artifacts: Path
    ctx: Context
    hub: FakeHub


@contextmanager
def served_catalog(tmp: Path) -> Iterator[Catalog]:
    hub = FakeHub()
    hub.add_repo(BASE, tiny_model_files(seed=0), tags=["v1.0"])
    hub.add_repo(LORA, tiny_lora_files(base_model=BASE))
    hub.add_repo(GGUF, tiny_gguf_files(base_model=BASE))
    hub.add_repo(RESTRICTED, tiny_model_files(seed=2, license="llama3"))
    hostile = tiny_model_files(seed=3)
    hostile["README.md"] = HOSTILE_CARD
    hub.add_repo(HOSTILE, hostile)
    with pytest.MonkeyPatch.context() as env, hub:
        for key in list(os.environ):
            if key.startswith("HUBD_"):
                env.delenv(key)
        env.setenv("HUBD_HOME", str(tmp / "home"))
        env.setenv("HUBD_NODE_NAME", "web-node")
        with Context.open(load_settings(endpoint=hub.endpoint)) as ctx:
            for repo in (BASE, LORA, GGUF, RESTRICTED, HOSTILE):
                asyncio.run(mirror(ctx, RepoRef.parse(repo)))
            guarded = replace(ctx, settings=ctx.settings.model_copy(update={"auth_required": True}))
            _, read = create_token(ctx, "read", "viewer")
            _, write = create_token(ctx, "write", "operator")
            artifacts = Path(__file__).parent / "artifacts"
            artifacts.mkdir(exist_ok=True)
            with serving(ctx) as url, serving(guarded) as guarded_url:
                yield Catalog(url, guarded_url, read, write, artifacts, ctx, hub)
