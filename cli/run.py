"""`hubd run`: a prompt through llama.cpp, or an OpenAI-compatible server, over verified files."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click

from hubd.errors import InvalidReference
from hubd.refs import RepoRef
from hubd.runtime.ready import Prepared, recall, request_key
from hubd.runtime.worker import Completion, Request, Worker

from .common import json_option, open_context
from .output import emit_json


@click.command("run")
@click.argument("repo", required=False)
@click.option("-p", "--prompt", help="Prompt to complete.")
@click.option(
    "--file", "pattern", metavar="GLOB", help="Which GGUF (default Q4_K_M, else smallest)."
)
@click.option("--lora", metavar="REPO", help="A GGUF LoRA adapter repo to apply.")
@click.option("--lora-scale", type=float, default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(1, 1 << 20), default=128, show_default=True)
@click.option("--ctx-size", type=click.IntRange(16, 1 << 20), default=2048, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--openai", is_flag=True, help="Serve an OpenAI-compatible API instead.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--alias", help="Model name for --openai (default: the repo id).")
@json_option
@click.pass_obj
def run_cmd(
    obj: dict[str, Any],
    repo: str | None,
    prompt: str | None,
    pattern: str | None,
    lora: str | None,
    lora_scale: float,
    max_tokens: int,
    ctx_size: int,
    seed: int,
    openai: bool,
    host: str,
    port: int,
    alias: str | None,
    as_json: bool,
) -> None:
    """Run REPO (org/name[@revision]) with llama.cpp; only verified files are loaded."""
    if not openai and not prompt:
        raise InvalidReference("give a prompt with -p/--prompt, or serve with --openai")
    if openai and lora_scale != 1.0:
        raise InvalidReference("--lora-scale is not supported by llama-cpp-python's server")
    repo_ref = RepoRef.parse(repo) if repo else None
    lora_ref = RepoRef.parse(lora) if lora else None
    if openai or not prompt:  # no prompt means --openai (checked above)
        from hubd.runtime.openai import ServedModel, serve  # aiohttp.web: only when serving
        from hubd.runtime.prepare import prepare

        prepared = prepare(open_context(obj), repo_ref, pattern=pattern, lora=lora_ref)
        name = alias or prepared.repo

        def announce(address: str) -> None:
            click.echo(f"serving {name} (OpenAI API) at {address}/v1  (Ctrl-C stops)", err=True)

        asyncio.run(
            serve([ServedModel(name, prepared)], host, port, n_ctx=ctx_size, ready=announce)
        )
        return

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    async def run_once() -> tuple[Prepared, Completion]:
        worker = await Worker.start()  # imports llama.cpp while hubd verifies
        try:
            ready = await asyncio.to_thread(_prepare, obj, repo_ref, pattern, lora_ref)
            request = Request(
                model=str(ready.model),
                prompt=prompt,
                max_tokens=max_tokens,
                lora=str(ready.lora) if ready.lora else None,
                lora_scale=lora_scale,
                n_ctx=ctx_size,
                seed=seed,
            )
            return ready, await worker.complete(request, None if as_json else show)
        finally:
            await worker.close()

    prepared, result = asyncio.run(run_once())
    if as_json:
        emit_json(
            {
                "repo": prepared.repo,
                "commit": prepared.commit,
                "model": str(prepared.model),
                "lora_repo": prepared.lora_repo,
                "lora": str(prepared.lora) if prepared.lora else None,
                "full_hash_checks": prepared.full_hashes,
                **result.__dict__,
            }
        )
    else:
        click.echo()


def _prepare(
    obj: dict[str, Any], repo: RepoRef | None, pattern: str | None, lora: RepoRef | None
) -> Prepared:
    """What the last run kept for this request (hubd.runtime.ready), else ``prepare``'s answer.

    The catalog, trust and GGUF stacks are imported only on the long way: a warm run starts
    llama.cpp on the kept answer while the worker is still importing it.
    """
    from hubd.config import load_settings  # pydantic: after the worker has started

    settings = load_settings(home=obj.get("home"))
    key = request_key(str(repo) if repo else None, pattern, str(lora) if lora else None)
    if settings.store_backend == "fs":
        from hubd.store import Store

        kept = recall(Store(settings.store_dir), key)
        if kept is not None:
            return kept
    from hubd.context import Context
    from hubd.runtime.prepare import prepare

    with Context.open(settings) as context:
        return prepare(context, repo, pattern=pattern, lora=lora)
