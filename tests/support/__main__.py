"""Dev tool: run a FakeHub or generate test repos on disk.

python -m tests.support serve --repo org/name=DIR [--repo ...] [--gated org/name] [--token T]
                             [--throttle BPS] [--port-file FILE] [--cdn URL]
python -m tests.support generate tiny-model DIR [--seed N] [--shards K]
python -m tests.support generate tiny-lora DIR --base org/name [--seed N]
python -m tests.support generate big DIR --bytes N --shards K [--seed N]
python -m tests.support generate tiny-gguf DIR [--base org/name] [--seed N]
python -m tests.support generate tiny-gguf-lora DIR --base org/name [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from .fakehub import FakeHub
from .modelgen import (
    big_safetensors_repo,
    tiny_gguf_files,
    tiny_gguf_lora_files,
    tiny_lora_files,
    tiny_model_files,
    write_files,
)

_SKIPPED_DIRS = {".git", ".cache"}  # VCS data and huggingface_hub's local_dir metadata


def _repo_arg(value: str) -> tuple[str, Path]:
    repo_id, sep, directory = value.partition("=")
    if not sep or repo_id.count("/") != 1 or not Path(directory).is_dir():
        raise argparse.ArgumentTypeError(f"expected org/name=DIR with an existing DIR: {value!r}")
    return repo_id, Path(directory)


def _repo_files(root: Path) -> dict[str, Path]:
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and not _SKIPPED_DIRS.intersection(path.relative_to(root).parts)
    }


def _write_atomic(path: Path, text: str) -> None:
    """Write-then-rename, so a watcher never reads a half-written URL."""
    tmp = path.with_name(f"{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


async def _serve(args: argparse.Namespace) -> None:
    hub = FakeHub()
    hub.tokens.update(args.token)
    hub.throttle = args.throttle
    for repo_id, directory in args.repo:
        hub.add_repo(repo_id, _repo_files(directory), gated=repo_id in args.gated)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    endpoint = await hub.start_async()
    if args.cdn:
        hub.cdn_endpoint = args.cdn.rstrip("/")
    try:
        if args.port_file:
            await asyncio.to_thread(_write_atomic, Path(args.port_file), endpoint + "\n")
        print(endpoint, flush=True)
        await stopping.wait()
    finally:
        await hub.stop_async()


def _generate(args: argparse.Namespace) -> None:
    if args.kind == "tiny-model":
        write_files(args.dir, tiny_model_files(seed=args.seed, shards=args.shards))
    elif args.kind == "tiny-lora":
        if not args.base:
            raise SystemExit("generate tiny-lora requires --base org/name")
        write_files(args.dir, tiny_lora_files(base_model=args.base, seed=args.seed))
    elif args.kind == "tiny-gguf":
        write_files(args.dir, tiny_gguf_files(base_model=args.base, seed=args.seed))
    elif args.kind == "tiny-gguf-lora":
        if not args.base:
            raise SystemExit("generate tiny-gguf-lora requires --base org/name")
        write_files(args.dir, tiny_gguf_lora_files(base_model=args.base, seed=args.seed))
    else:
        if args.bytes is None:
            raise SystemExit("generate big requires --bytes N")
        big_safetensors_repo(args.dir, total_bytes=args.bytes, shards=args.shards, seed=args.seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve directories as Hub repos until SIGTERM/SIGINT")
    serve.add_argument("--repo", type=_repo_arg, action="append", required=True)
    serve.add_argument("--gated", action="append", default=[], metavar="ORG/NAME")
    serve.add_argument("--token", action="append", default=[], help="valid token for gated repos")
    serve.add_argument("--throttle", type=float, metavar="BPS", help="cap on file bodies, bytes/s")
    serve.add_argument("--port-file", help="write the endpoint URL here once listening")
    serve.add_argument("--cdn", help="redirect LFS files to URL/cdn/<sha256> (e.g. an nginx)")

    generate = commands.add_parser("generate", help="write a generated repo to DIR")
    generate.add_argument(
        "kind", choices=["tiny-model", "tiny-lora", "tiny-gguf", "tiny-gguf-lora", "big"]
    )
    generate.add_argument("dir", type=Path)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--shards", type=int)
    generate.add_argument(
        "--base", metavar="ORG/NAME", help="base model (tiny-lora, tiny-gguf, tiny-gguf-lora)"
    )
    generate.add_argument("--bytes", type=int, help="total weight bytes (big)")

    args = parser.parse_args(argv)
    if args.command == "serve":
        asyncio.run(_serve(args))
        return
    # Defaults differ per kind (the LoRA seed defaults to 1, big needs an explicit shard count).
    if args.seed is None:
        args.seed = 1 if args.kind in ("tiny-lora", "tiny-gguf-lora") else 0
    if args.shards is None:
        args.shards = 1 if args.kind == "big" else 2
    _generate(args)


if __name__ == "__main__":
    main()
