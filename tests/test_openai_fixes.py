"""The OpenAI front as real clients use it: errors in OpenAI's shape, /v1/models/{id}, refused
embeddings, one request at a time to llama.cpp, and broken streams that end with an error event.

Most tests put a stand-in llama.cpp server behind the front; the slow one runs the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.corpus import seed
from support.modelgen import tiny_llama_gguf

from hubd.config import load_settings
from hubd.context import Context
from hubd.refs import RepoRef
from hubd.runtime.openai import ServedModel, front_app, serve
from hubd.runtime.prepare import prepare

ALIASES = ["tiny", "acme/tiny-gguf"]
DONE = b"data: [DONE]\n\n"


def chunk(text: str) -> bytes:
    delta = {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(delta).encode() + b"\n\n"


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def front(
    handler: Callable[[web.Request], Any],
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """The front on a loopback port, forwarding to ``handler`` as its llama.cpp server."""
    upstream = web.Application()
    upstream.router.add_post("/v1/chat/completions", handler)
    upstream.router.add_post("/v1/completions", handler)
    async with (
        running(upstream) as upstream_url,
        running(front_app(upstream_url, ALIASES)) as url,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
    ):
        yield url, session


async def never(_: web.Request) -> web.Response:
    raise AssertionError("the front must answer this itself")


def assert_openai_error(body: Any, code: str, param: str | None) -> None:
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code and body["error"]["param"] == param
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]


async def test_model_by_id_in_openai_shape() -> None:
    async with front(never) as (url, session):
        async with session.get(f"{url}/v1/models") as r:
            listed = (await r.json())["data"]
        for alias, described in zip(ALIASES, listed, strict=True):
            async with session.get(f"{url}/v1/models/{alias}") as r:
                assert r.status == 200
                model = await r.json()
            assert model == described
            assert set(model) == {"id", "object", "created", "owned_by"}
            assert model["id"] == alias and model["object"] == "model"
            assert isinstance(model["created"], int)
        async with session.get(f"{url}/v1/models/gpt-4") as r:
            assert r.status == 404
            assert_openai_error(await r.json(), "model_not_found", "model")


async def test_missing_model_is_a_400_naming_the_field() -> None:
    async with front(never) as (url, session):
        for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            async with session.post(f"{url}{path}", json={"prompt": "hi"}) as r:
                assert r.status == 400
                body = await r.json()
            assert_openai_error(body, "missing_required_parameter", "model")
            assert "'model'" in body["error"]["message"] and "None" not in body["error"]["message"]
        async with session.post(f"{url}/v1/completions", json={"model": 7}) as r:
            assert r.status == 400
            assert_openai_error(await r.json(), "invalid_type", "model")
        async with session.post(f"{url}/v1/completions", json={"model": "gpt-4"}) as r:
            assert r.status == 404
            assert_openai_error(await r.json(), "model_not_found", "model")


async def test_embeddings_are_a_404_in_openai_format() -> None:
    async with (
        front(never) as (url, session),
        session.post(f"{url}/v1/embeddings", json={"model": "tiny", "input": "x"}) as r,
    ):
        assert r.status == 404
        assert_openai_error(await r.json(), "embeddings_not_supported", "model")


async def test_requests_reach_llama_cpp_one_at_a_time() -> None:
    busy = 0
    most = 0

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        nonlocal busy, most
        busy += 1
        most = max(most, busy)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for word in ("a", "b", "c"):
            await asyncio.sleep(0.05)
            await response.write(chunk(word))
        await response.write(DONE)
        busy -= 1
        return response

    async with front(slow_stream) as (url, session):

        async def one() -> str:
            body = {"model": "tiny", "messages": [], "stream": True}
            async with session.post(f"{url}/v1/chat/completions", json=body) as r:
                return await r.text()

        answers = await asyncio.gather(*(one() for _ in range(3)))
    assert most == 1
    assert all(a.endswith(DONE.decode()) and "error" not in a for a in answers)


async def stream_then(request: web.Request, end: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk("partial"))
    if end == "abort":
        assert request.transport is not None
        request.transport.abort()
    return response


@pytest.mark.parametrize("end", ["abort", "no-done"])
async def test_a_broken_stream_ends_with_an_sse_error_event(end: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await stream_then(request, end)

    async with front(handler) as (url, session):
        body = {"model": "tiny", "messages": [], "stream": True}
        async with session.post(f"{url}/v1/chat/completions", json=body) as r:
            assert r.status == 200
            text = await r.text()
    events = [e for e in text.split("\n\n") if e]
    assert "partial" in events[0]
    kind, data = events[-1].split("\n")
    assert kind == "event: error"
    error = json.loads(data.removeprefix("data: "))["error"]
    assert error["type"] == "server_error" and error["message"]


@pytest.fixture
def tiny_gguf(home: Path) -> ServedModel:
    ctx = Context.open(load_settings())
    try:
        card = b"---\nlicense: apache-2.0\n---\n# tiny\n"
        seed(ctx, "acme/tiny-gguf", {"README.md": card, "m-Q4_K_M.gguf": tiny_llama_gguf()})
        return ServedModel("tiny", prepare(ctx, RepoRef.parse("acme/tiny-gguf")))
    finally:
        ctx.close()


@pytest.mark.slow
async def test_concurrent_streams_all_get_content(tiny_gguf: ServedModel) -> None:
    """llama-cpp-python's server ends a running stream with [DONE] when another request comes."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def announce(url: str) -> None:
        ready.set_result(url)

    server = asyncio.create_task(serve([tiny_gguf], "127.0.0.1", 0, n_ctx=256, ready=announce))
    try:
        url = await asyncio.wait_for(asyncio.shield(ready), 120)
        # before the fix two of the three streams ended early, or hung: a deadline, not a hang
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

            async def streamed(n: int) -> str:
                body = {
                    "model": "tiny",
                    "messages": [{"role": "user", "content": f"hello {n}"}],
                    "max_tokens": 8,
                    "temperature": 0,
                    "stream": True,
                }
                content = ""
                async with session.post(f"{url}/v1/chat/completions", json=body) as r:
                    assert r.status == 200
                    text = await r.text()
                assert "event: error" not in text and text.rstrip().endswith("data: [DONE]")
                for line in text.splitlines():
                    if line.startswith("data: {"):
                        for choice in json.loads(line[6:])["choices"]:
                            content += choice["delta"].get("content") or ""
                return content

            contents = await asyncio.gather(*(streamed(n) for n in range(3)))
            assert all(contents), contents
            embed = {"model": "tiny", "input": "x"}
            async with session.post(f"{url}/v1/embeddings", json=embed) as r:
                assert r.status == 404
                assert_openai_error(await r.json(), "embeddings_not_supported", "model")
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
