"""An OpenAI-compatible API over verified files: llama-cpp-python's server behind a hubd front.

llama-cpp-python's server runs in its own process with a generated multi-model config of
verified, preflighted paths. hubd's front answers on the public address and refuses unknown
model aliases itself: the server silently answers with its first model otherwise.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..errors import RuntimeCrashed
from .prepare import Prepared

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


def _error(status: int, message: str, code: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return web.json_response(body, status=status)


def add_routes(app: web.Application, upstream: str, aliases: Sequence[str]) -> None:
    """Model listing and alias checks here, completions forwarded to ``upstream``.

    Mounted on the `hubd run --openai` front, or on the daemon's own app for [[llm]] entries.
    """
    known = set(aliases)

    async def models(_: web.Request) -> web.Response:
        data = [{"id": a, "object": "model", "owned_by": "hubd"} for a in aliases]
        return web.json_response({"object": "list", "data": data})

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "the request body is not JSON", "invalid_json")
        model = payload.get("model") if isinstance(payload, dict) else None
        if model not in known:
            return _error(
                404, f"unknown model {model!r}; served: {', '.join(aliases)}", "model_not_found"
            )
        session = request.app[SESSION]
        try:
            async with session.post(
                upstream + request.path, data=body, headers={"Content-Type": "application/json"}
            ) as answer:
                response = web.StreamResponse(
                    status=answer.status,
                    headers={"Content-Type": answer.headers.get("Content-Type", "text/plain")},
                )
                await response.prepare(request)
                async for chunk in answer.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except aiohttp.ClientError:
            return _error(502, "the llama.cpp server is not answering", "upstream_unavailable")

    async def session_ctx(app: web.Application) -> Any:
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get("/v1/models", models)
    for path in ("/v1/completions", "/v1/chat/completions", "/v1/embeddings"):
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
