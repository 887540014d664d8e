"""An OpenAI-compatible API over verified files: llama-cpp-python's server behind a hubd front.

llama-cpp-python's server runs in its own process with a generated multi-model config of
verified, preflighted paths. hubd's front answers on the public address and refuses unknown
model aliases itself: the server silently answers with its first model otherwise. The front
also sends the server one request at a time: by default the server ends a running stream early,
with a normal ``[DONE]``, as soon as another request arrives.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import RuntimeCrashed
from ..extras import require
from .ready import Prepared

MAX_BODY = 16 * 1024 * 1024
SESSION = web.AppKey("session", aiohttp.ClientSession)
STARTUP_SECONDS = 120


@dataclass(frozen=True)
class ServedModel:
    alias: str
    prepared: Prepared


def server_config(models: Sequence[ServedModel], port: int, n_ctx: int) -> dict[str, Any]:
    """llama_cpp.server's ConfigFileSettings for these models, on a loopback port."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "interrupt_requests": False,  # it would end a stream early, reporting success
        "models": [
            {
                "model": str(m.prepared.model),
                "model_alias": m.alias,
                "lora_path": str(m.prepared.lora) if m.prepared.lora else None,
                "n_ctx": n_ctx,
                "verbose": False,
            }
            for m in models
        ],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _error_body(
    message: str, code: str, param: str | None = None, kind: str = "invalid_request_error"
) -> dict[str, Any]:
    """OpenAI's error object: clients read ``error.message`` and ``error.code``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error(
    status: int,
    message: str,
    code: str,
    param: str | None = None,
    kind: str = "invalid_request_error",
) -> web.Response:
    return web.json_response(_error_body(message, code, param, kind), status=status)


def _stream_error(message: str) -> bytes:
    """An SSE error event: a stream that breaks must not end looking like a finished answer."""
    body = _error_body(message, "upstream_stream_broken", kind="server_error")
    return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


def add_routes(app: web.Application, upstream: str, aliases: Sequence[str]) -> None:
    """Model listing and alias checks here, completions forwarded to ``upstream``.

    Mounted on the `hubd run --openai` front, or on the daemon's own app for [[llm]] entries.
    Embeddings are refused with a 404: the server loads models without embedding support.
    """
    known = set(aliases)
    created = int(time.time())  # when serving began: the catalog's models have no such date
    one_at_a_time = asyncio.Lock()  # queued here, never interleaved in the server's one context

    def unknown(alias: object) -> web.Response:
        served = ", ".join(aliases)
        return _error(
            404, f"the model {alias!r} does not exist; served: {served}", "model_not_found", "model"
        )

    def describe(alias: str) -> dict[str, Any]:
        return {"id": alias, "object": "model", "created": created, "owned_by": "hubd"}

    async def models(_: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [describe(a) for a in aliases]})

    async def model(request: web.Request) -> web.Response:
        alias = request.match_info["id"]
        if alias not in known:
            return unknown(alias)
        return web.json_response(describe(alias))

    async def checked(request: web.Request) -> tuple[bytes, web.Response | None]:
        """The body, or the error answer for a body that names no served model."""
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            return body, _error(400, "the request body is not JSON", "invalid_json")
        if not isinstance(payload, dict):
            return body, _error(400, "the request body must be a JSON object", "invalid_json")
        if "model" not in payload:
            return body, _error(
                400, "missing required parameter: 'model'", "missing_required_parameter", "model"
            )
        if not isinstance(payload["model"], str):
            return body, _error(400, "'model' must be a string", "invalid_type", "model")
        if payload["model"] not in known:
            return body, unknown(payload["model"])
        return body, None

    async def embeddings(request: web.Request) -> web.Response:
        _, refused = await checked(request)
        if refused is not None:
            return refused
        return _error(
            404,
            "embeddings are not served: hubd loads models for completions only",
            "embeddings_not_supported",
            "model",
        )

    async def forward(request: web.Request) -> web.StreamResponse:
        body, refused = await checked(request)
        if refused is not None:
            return refused
        async with one_at_a_time:
            return await relay(request, body)

    async def relay(request: web.Request, body: bytes) -> web.StreamResponse:
        session = request.app[SESSION]
        response: web.StreamResponse | None = None
        streaming = done = False
        tail = b""  # the end of the previous chunk: [DONE] may straddle two
        try:
            async with session.post(
                upstream + request.path, data=body, headers={"Content-Type": "application/json"}
            ) as answer:
                content_type = answer.headers.get("Content-Type", "text/plain")
                response = web.StreamResponse(
                    status=answer.status, headers={"Content-Type": content_type}
                )
                await response.prepare(request)
                streaming = content_type.startswith("text/event-stream")
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                    done = done or b"data: [DONE]" in tail + chunk
                    tail = chunk[-16:]
                if streaming and not done:
                    await response.write(_stream_error("the stream ended before [DONE]"))
        except aiohttp.ClientError:
            if response is None:
                return _error(
                    502,
                    "the llama.cpp server is not answering",
                    "upstream_unavailable",
                    kind="server_error",
                )
            if streaming:  # a JSON answer cut short fails to parse: the client notices
                await response.write(_stream_error("the llama.cpp server broke off the answer"))
        await response.write_eof()
        return response

    async def session_ctx(app: web.Application) -> Any:
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{id:.+}", model)  # aliases may be repo ids: org/name
    app.router.add_post("/v1/embeddings", embeddings)
    for path in ("/v1/completions", "/v1/chat/completions"):
        app.router.add_post(path, forward)


def front_app(upstream: str, aliases: Sequence[str]) -> web.Application:
    """The public API of `hubd run --openai`."""

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "models": list(aliases)})

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_get("/healthz", health)
    add_routes(app, upstream, aliases)
    return app


async def _wait_ready(proc: asyncio.subprocess.Process, upstream: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STARTUP_SECONDS
    async with aiohttp.ClientSession() as session:
        while loop.time() < deadline:
            if proc.returncode is not None:
                raise RuntimeCrashed(f"the llama.cpp server exited ({proc.returncode})")
            try:
                async with session.get(upstream + "/v1/models") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeCrashed("the llama.cpp server did not start in time")


@asynccontextmanager
async def llama_server(
    models: Sequence[ServedModel], n_ctx: int
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """llama-cpp-python's server on a loopback port with these models: (URL, process)."""
    for module in ("llama_cpp", "uvicorn"):  # llama_cpp.server runs on uvicorn
        require(module, "llama", "serving [[llm]] models")
    internal = _free_port()
    upstream = f"http://127.0.0.1:{internal}"
    with tempfile.TemporaryDirectory(prefix="hubd-llm-") as tmp:
        config = Path(tmp) / "llama-server.json"
        config.write_text(json.dumps(server_config(models, internal, n_ctx)))
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--config_file",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await _wait_ready(proc, upstream)
            yield upstream, proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def serve(
    models: Sequence[ServedModel],
    host: str,
    port: int,
    *,
    n_ctx: int = 2048,
    ready: Callable[[str], Awaitable[None] | None] | None = None,
) -> None:
    """Serve until cancelled; the llama.cpp server process goes down with us."""
    async with llama_server(models, n_ctx) as (upstream, proc):
        runner = web.AppRunner(front_app(upstream, [m.alias for m in models]), access_log=None)
        try:
            await runner.setup()
            await web.TCPSite(runner, host, port).start()
            address = f"http://{host}:{runner.addresses[0][1]}"
            if ready is not None:
                result = ready(address)
                if result is not None:
                    await result
            exit_code = await proc.wait()
            raise RuntimeCrashed(f"the llama.cpp server exited ({exit_code})")
        finally:
            await runner.cleanup()
