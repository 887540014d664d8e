"""llama.cpp over verified files: real completions from a generated tiny llama GGUF and LoRA."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Result, hubd_process
from support.fakehub import FakeHub
from support.modelgen import tiny_llama_gguf, tiny_lora_gguf, tiny_model_files

from hubd.config import load_settings
from hubd.context import Context
from hubd.errors import InvalidModelFile, RuntimeCrashed
from hubd.model.gguf import inspect
from hubd.refs import RepoRef
from hubd.runtime import prepare as runtime_prepare
from hubd.runtime.openai import ServedModel, serve
from hubd.runtime.prepare import prepare
from hubd.runtime.ready import Prepared, recall, request_key
from hubd.runtime.selection import GgufFile, choose
from hubd.runtime.worker import Request, complete
from hubd.store import Store

Hubd = Callable[..., Result]
BASE = "acme/tiny-gguf"
LORA = "acme/tiny-lora-gguf"
PROMPT = "Why is drinking water so healthy?"


def card(**fields: str) -> bytes:
    lines = "".join(f"{k}: {v}\n" for k, v in fields.items())
    return f"---\n{lines}---\n# test repo\n".encode()


@pytest.fixture
def gguf_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub()
    fake.add_repo(
        BASE,
        {
            "README.md": card(license="apache-2.0"),
            "tiny-llama-Q8_0.gguf": tiny_llama_gguf(seed=3),
            "tiny-llama-Q4_K_M.gguf": tiny_llama_gguf(seed=0),
        },
    )
    lora_card = card(license="apache-2.0", base_model=BASE, base_model_relation="adapter")
    fake.add_repo(LORA, {"README.md": lora_card, "adapter-f32.gguf": tiny_lora_gguf()})
    fake.add_repo(
        "acme/lora-gpt2", {"README.md": lora_card, "a.gguf": tiny_lora_gguf(architecture="gpt2")}
    )
    fake.add_repo("acme/lora-wide", {"README.md": lora_card, "a.gguf": tiny_lora_gguf(hidden=24)})
    fake.add_repo("acme/safetensors-only", tiny_model_files(seed=4))
    fake.add_repo(
        "acme/safetensors-only-GGUF",
        {
            "README.md": card(base_model="acme/safetensors-only", base_model_relation="quantized"),
            "m-Q4_K_M.gguf": tiny_llama_gguf(seed=4),
        },
    )
    with fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
        yield fake


@pytest.fixture
def mirrored(hubd: Hubd, gguf_hub: FakeHub) -> Hubd:
    for repo in (
        BASE,
        LORA,
        "acme/lora-gpt2",
        "acme/lora-wide",
        "acme/safetensors-only",
        "acme/safetensors-only-GGUF",
    ):
        assert hubd("mirror", repo, "-q").code == 0
    return hubd


def test_run_prefers_q4_k_m_and_verifies_once(mirrored: Hubd) -> None:
    first = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "8", "--json").json()
    assert str(first["model"]).endswith("tiny-llama-Q4_K_M.gguf")
    assert first["completion_tokens"] == 8 and first["finish_reason"] == "length"
    assert first["full_hash_checks"] == 1
    again = mirrored(
        "run", BASE, "-p", PROMPT, "--max-tokens", "4", "--file", "*Q4_K_M*", "--json"
    ).json()
    assert again["full_hash_checks"] == 0 and again["completion_tokens"] == 4


def test_preflight_verdict_is_kept_per_model_and_lora(
    mirrored: Hubd, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass is kept by the digests it judged: the same files skip it, a new pairing does not."""
    ctx = Context.open(load_settings())
    inspected: list[str] = []
    real = runtime_prepare.inspect

    def counting(path: Path, label: str | None = None) -> Any:
        inspected.append(path.name)
        return real(path, label)

    monkeypatch.setattr(runtime_prepare, "inspect", counting)
    prepare(ctx, RepoRef.parse(BASE))
    prepare(ctx, RepoRef.parse(BASE))
    assert inspected == ["tiny-llama-Q4_K_M.gguf"]
    prepare(ctx, RepoRef.parse(BASE), lora=RepoRef.parse(LORA))  # a new pairing: judged
    assert inspected[1:] == ["tiny-llama-Q4_K_M.gguf", "adapter-f32.gguf"]
    with pytest.raises(InvalidModelFile):  # a refusal is never kept as a pass
        prepare(ctx, RepoRef.parse(BASE), lora=RepoRef.parse("acme/lora-wide"))
    with pytest.raises(InvalidModelFile):
        prepare(ctx, RepoRef.parse(BASE), lora=RepoRef.parse("acme/lora-wide"))
    ctx.close()


def test_run_streams_text_to_stdout(mirrored: Hubd) -> None:
    result = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "6")
    assert result.code == 0 and result.out.endswith("\n") and len(result.out) > 1


def test_lora_alone_finds_its_base(mirrored: Hubd) -> None:
    data = mirrored(
        "run", "--lora", LORA, "--lora-scale", "0.5", "-p", PROMPT, "--max-tokens", "5", "--json"
    ).json()
    assert data["repo"] == BASE and data["lora_repo"] == LORA
    assert data["completion_tokens"] == 5


def test_tampered_file_is_never_loaded(mirrored: Hubd, home: Path) -> None:
    mirrored("run", BASE, "-p", "x", "--max-tokens", "1", "--json").json()  # verified and stamped
    model = Path(
        str(mirrored("run", BASE, "-p", "x", "--max-tokens", "1", "--json").json()["model"])
    )
    blob = model.resolve()
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-10] ^= 0x01
    blob.write_bytes(bytes(data))
    result = mirrored("run", BASE, "-p", "x")
    assert result.code == 6 and "refusing to load" in result.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([BASE, "--lora", "acme/lora-gpt2"], 11, "LoRA for 'gpt2'"),
        ([BASE, "--lora", "acme/lora-wide"], 11, "do not fit"),
        ([BASE, "--lora", BASE], 11, "is not a LoRA adapter"),
        ([LORA], 11, "is a LoRA adapter, not a model"),
        ([BASE, "--file", "*Q2_K*"], 3, "no GGUF file in acme/tiny-gguf matches"),
        (["acme/never-mirrored"], 3, "not in the catalog"),
        (["acme/safetensors-only"], 3, "acme/safetensors-only-GGUF"),
        ([BASE, "--max-tokens", "5000", "--ctx-size", "64"], 2, "exceed the context size"),
    ],
)
def test_refusals(mirrored: Hubd, args: list[str], code: int, message: str) -> None:
    result = mirrored("run", *args, "-p", PROMPT)
    assert result.code == code, result.err
    assert message in result.err and "hubd: error:" in result.err


def test_run_needs_a_prompt(mirrored: Hubd) -> None:
    result = mirrored("run", BASE)
    assert result.code == 2 and "--prompt" in result.err


def test_native_crash_is_an_error_not_the_end(tmp_path: Path) -> None:
    """What preflight prevents: llama.cpp given a model as its LoRA kills its process."""
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_llama_gguf())
    with pytest.raises(RuntimeCrashed):
        asyncio.run(complete(Request(model=str(model), prompt="x", lora=str(model))))


def test_preflight_rejects_damaged_gguf(tmp_path: Path) -> None:
    data = tiny_llama_gguf()
    cases = {
        "truncated": data[: len(data) - 100],
        "magic": b"GGML" + data[4:],
        "header": data[:8] + (10**12).to_bytes(8, "little") + data[16:],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(content)
        with pytest.raises(InvalidModelFile):
            inspect(path)


def test_selection_rules() -> None:
    def files(*names: str, size: int = 10) -> list[GgufFile]:
        return [GgufFile(n, size + i, "0" * 64) for i, n in enumerate(names)]

    assert choose(files("a-Q8_0.gguf", "a-Q4_K_M.gguf"), None, "r").name == "a-Q4_K_M.gguf"
    assert choose(files("a-Q8_0.gguf", "a-Q2_K.gguf"), None, "r").name == "a-Q8_0.gguf"
    split = files("m-00001-of-00002.gguf", "m-00002-of-00002.gguf", "small.gguf", size=1)
    chosen = choose(split, "m-*", "r")
    assert [p.path for p in chosen.parts] == ["m-00001-of-00002.gguf", "m-00002-of-00002.gguf"]
    with pytest.raises(Exception, match="part"):
        choose(files("m-00001-of-00003.gguf", "m-00003-of-00003.gguf"), None, "r")


@pytest.mark.slow
def test_openai_api_serves_verified_models_by_alias(mirrored: Hubd, home: Path) -> None:
    from hubd.config import load_settings
    from hubd.context import Context
    from hubd.refs import RepoRef
    from hubd.runtime.prepare import prepare

    ctx = Context.open(load_settings())
    prepared = prepare(ctx, RepoRef.parse(BASE), lora=RepoRef.parse(LORA))
    loop = asyncio.new_event_loop()
    address: list[str] = []
    ready = threading.Event()

    async def announce(url: str) -> None:
        address.append(url)
        ready.set()

    task = loop.create_task(
        serve([ServedModel("tiny", prepared)], "127.0.0.1", 0, n_ctx=256, ready=announce)
    )

    def run_until_cancelled() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()

    thread = threading.Thread(target=run_until_cancelled, daemon=True)
    thread.start()
    try:
        assert ready.wait(120), "the OpenAI server did not come up"
        asyncio.run(_exercise_openai(address[0]))
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(30)
    assert not thread.is_alive()


async def _exercise_openai(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["tiny"]
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 4}
        async with session.post(f"{base}/v1/completions", json=body) as r:
            assert r.status == 200
            assert (await r.json())["usage"]["completion_tokens"] >= 1
        async with session.post(f"{base}/v1/completions", json={**body, "model": "gpt-4"}) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"
        async with session.post(f"{base}/v1/completions", data=b"{not json") as r:
            assert r.status == 400
        chat = {
            "model": "tiny",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3,
            "stream": True,
        }
        async with session.post(f"{base}/v1/chat/completions", json=chat) as r:
            assert r.status == 200
            assert (await r.text()).count("data: ") >= 2


@pytest.mark.slow
def test_daemon_serves_llm_entries_by_alias(mirrored: Hubd, home: Path) -> None:
    (home / "hubd.toml").write_text(
        f'[[llm]]\nalias = "tiny"\nrepo = "{BASE}"\nlora = "{LORA}"\n\n'
        f'[[llm]]\nalias = "plain"\nrepo = "{BASE}"\nfile = "*Q8_0*"\n'
    )
    url_file = home / "url"
    proc = hubd_process("daemon", "--port", "0", "--url-file", str(url_file))
    try:
        deadline = time.monotonic() + 120
        while not url_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        asyncio.run(_exercise_daemon_llm(url_file.read_text()))
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


async def _exercise_daemon_llm(base: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/v1/models") as r:
            assert sorted(m["id"] for m in (await r.json())["data"]) == ["plain", "tiny"]
        for alias in ("tiny", "plain"):
            body = {"model": alias, "prompt": PROMPT, "max_tokens": 3}
            async with session.post(f"{base}/v1/completions", json=body) as r:
                assert r.status == 200 and (await r.json())["usage"]["completion_tokens"] >= 1
        async with session.post(f"{base}/v1/completions", json={"model": "nope"}) as r:
            assert r.status == 404
        async with session.get(f"{base}/api/models/{BASE}") as r:
            assert r.status == 200  # the same daemon still serves the Hub API


@pytest.mark.parametrize(
    ("toml", "code", "message"),
    [
        ('[[llm]]\nalias = "x"\n', 2, "llm[0].repo is missing"),
        ('[[llm]]\nrepo = "a/b"\n', 2, "llm[0].alias is missing"),
        ('[[llm]]\nalias = "x"\nrepo = "../b"\n', 2, "not a repo id"),
        ('[[llm]]\nalias = "x"\nrepo = "a/b"\n[[llm]]\nalias = "x"\nrepo = "a/c"\n', 2, "unique"),
        (f'[[llm]]\nalias = "x"\nrepo = "{BASE}"\nlora = "acme/lora-wide"\n', 11, "do not fit"),
    ],
)
def test_bad_llm_entries_stop_the_daemon(
    mirrored: Hubd, home: Path, toml: str, code: int, message: str
) -> None:
    (home / "hubd.toml").write_text(toml)
    result = mirrored("daemon", "--port", "0")
    assert result.code == code and message in result.err, result.err


def test_trust_policy_refusal_means_no_load(mirrored: Hubd, home: Path) -> None:
    (home / "trust").mkdir(exist_ok=True)
    policy = home / "trust" / "policy.toml"
    policy.write_text('[[rules]]\nrepo = "acme/*"\nsigners = ["security-team"]\n')
    refused = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2")
    assert refused.code == 6 and "trust policy refuses" in refused.err
    policy.write_text('[[rules]]\nrepo = "acme/*"\nsigners = ["node"]\n')  # mirror signed it
    assert mirrored("run", BASE, "--lora", LORA, "-p", PROMPT, "--max-tokens", "2").code == 0


def _kept(home: Path, repo: str = BASE) -> Prepared | None:
    return recall(Store(home / "store"), request_key(repo, None, None))


def test_a_warm_run_starts_from_the_kept_answer_while_nothing_under_it_changed(
    mirrored: Hubd, gguf_hub: FakeHub, home: Path, tmp_path: Path
) -> None:
    """The kept answer stands for the catalog, trust and preflight only while its ref, blob
    stamps, snapshot links and trust listings are as they were; each change is a new answer."""
    assert _kept(home) is None
    first = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2", "--json").json()
    kept = _kept(home)
    assert kept is not None and str(kept.model) == first["model"]
    assert kept.commit == first["commit"] and kept.full_hashes == 0

    pub = tmp_path / "node.pub"  # a new trusted key: the verdict is reached again, then kept
    pub.write_text(mirrored("keys", "show", "--public").out)
    assert mirrored("trust", "add", "colleague", str(pub)).code == 0
    assert _kept(home) is None
    assert mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2").code == 0
    assert _kept(home) is not None

    blob = Path(first["model"]).resolve()  # a blob touched since its last full hash
    os.utime(blob, ns=(blob.stat().st_atime_ns, blob.stat().st_mtime_ns + 1))
    assert _kept(home) is None
    again = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2", "--json").json()
    assert again["full_hash_checks"] == 1 and _kept(home) is not None

    moved = gguf_hub.add_repo(  # main moves upstream, and the mirror follows it
        BASE, {"README.md": card(license="mit"), "tiny-llama-Q4_K_M.gguf": tiny_llama_gguf(seed=5)}
    )
    assert mirrored("mirror", BASE, "-q").code == 0
    assert _kept(home) is None
    after = mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2", "--json").json()
    assert after["commit"] == moved and _kept(home) is not None

    assert mirrored("rm", f"{BASE}@{moved}").code == 0  # its snapshot goes with it
    assert _kept(home) is None


def test_a_run_under_a_signer_rule_is_judged_afresh_each_time(mirrored: Hubd, home: Path) -> None:
    """Certificates expire by the clock: a revision a rule names signers for is never kept."""
    (home / "trust").mkdir(exist_ok=True)
    (home / "trust" / "policy.toml").write_text('[[rules]]\nrepo = "acme/*"\nsigners = ["node"]\n')
    assert mirrored("run", BASE, "-p", PROMPT, "--max-tokens", "2").code == 0
    assert _kept(home) is None
