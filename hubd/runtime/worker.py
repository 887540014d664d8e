"""llama.cpp in a worker process: a native crash there is an error here, not the end of hubd.

Protocol: one JSON request on stdin; JSON lines on stdout: ``{"text": …}`` per token, then one
``{"done": …}`` with counts and timings, or ``{"error": …}``. Run as
``python -m hubd.runtime.worker``.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, RuntimeCrashed
from ..extras import require


class _BadInput(ValueError):
    """The request cannot be served as asked; reported to the parent as bad input."""


@dataclass(frozen=True)
class Request:
    model: str
    prompt: str
    max_tokens: int = 128
    lora: str | None = None
    lora_scale: float = 1.0
    n_ctx: int = 2048
    seed: int = 0
    temperature: float = 0.8


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    load_seconds: float
    first_token_seconds: float | None
    tokens_per_second: float | None


def _serve(request: Request, emit: Callable[[dict[str, Any]], None]) -> None:
    import llama_cpp
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(
        model_path=request.model,
        lora_path=request.lora,
        lora_scale=request.lora_scale,
        n_ctx=request.n_ctx,
        seed=request.seed,
        verbose=False,
    )
    loaded = time.perf_counter()
    prompt = llm.tokenize(request.prompt.encode())
    if len(prompt) + request.max_tokens > request.n_ctx:
        raise _BadInput(
            f"the prompt ({len(prompt)} tokens) plus max_tokens ({request.max_tokens}) exceed "
            f"the context size ({request.n_ctx})"
        )
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    first: float | None = None
    tokens = 0
    finish = "length"
    for token in llm.generate(prompt, temp=request.temperature):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            finish = "stop"
            break
        first = first or time.perf_counter()
        tokens += 1
        text = decoder.decode(llm.detokenize([token]))
        if text:
            emit({"text": text})
        if tokens >= request.max_tokens:
            break
    if tail := decoder.decode(b"", final=True):
        emit({"text": tail})
    end = time.perf_counter()
    emit(
        {
            "done": {
                "prompt_tokens": len(prompt),
                "completion_tokens": tokens,
                "finish_reason": finish,
                "load_seconds": round(loaded - started, 4),
                "first_token_seconds": None if first is None else round(first - loaded, 4),
                "tokens_per_second": None
                if first is None or tokens < 2 or end <= first
                else round((tokens - 1) / (end - first), 2),
            }
        }
    )


def main() -> None:
    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        import llama_cpp  # noqa: F401  (imported while the parent checks what it will load)

        _serve(Request(**json.loads(sys.stdin.readline())), emit)
    except _BadInput as exc:
        emit({"error": str(exc), "bad_input": True})
        sys.exit(1)
    except Exception as exc:  # reported to the parent as a typed error
        emit({"error": f"{type(exc).__name__}: {exc}"})
        sys.exit(1)


class Worker:
    """A worker process, started early so that importing llama.cpp overlaps hubd's checks."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls) -> Worker:
        require("llama_cpp", "llama", "running a model")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hubd.runtime.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=2**20,
        )
        return cls(proc)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def complete(
        self, request: Request, on_text: Callable[[str], None] | None = None
    ) -> Completion:
        """Run one completion, streaming text to ``on_text``; the worker exits afterwards."""
        proc = self.proc
        # start() opened all three as PIPE; the types allow None for other ways of starting
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # noqa: S101
        proc.stdin.write(json.dumps(asdict(request)).encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()
        parts: list[str] = []
        done: dict[str, Any] | None = None
        error: str | None = None
        bad_input = False
        try:
            async for line in proc.stdout:
                message = json.loads(line)
                if "text" in message:
                    parts.append(message["text"])
                    if on_text is not None:
                        on_text(message["text"])
                elif "done" in message:
                    done = message["done"]
                elif "error" in message:
                    error = message["error"]
                    bad_input = bool(message.get("bad_input"))
            stderr = (await proc.stderr.read()).decode(errors="replace").strip()
            code = await proc.wait()
        finally:
            await self.close()
        name = Path(request.model).name
        if code < 0:
            raise RuntimeCrashed(
                f"llama.cpp crashed ({signal.Signals(-code).name}) running {name}",
                hint=stderr.splitlines()[-1] if stderr else None,
            )
        if error is not None and bad_input:
            raise InvalidRequest(error)
        if error is not None or done is None:
            raise RuntimeCrashed(f"llama.cpp failed running {name}: {error or stderr or code}")
        return Completion(text="".join(parts), **done)


async def complete(request: Request, on_text: Callable[[str], None] | None = None) -> Completion:
    """Run one completion in a fresh worker process."""
    worker = await Worker.start()
    return await worker.complete(request, on_text)


if __name__ == "__main__":
    main()
