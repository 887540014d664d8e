"""Fixtures: an isolated environment, a fresh hubd home, a loopback fake Hub, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# huggingface_hub reads HF_HOME (its token file) at import: isolate before anything imports it.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="hubd-test-hf-")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import pytest
from sqlalchemy import create_engine, make_url, text
from support.fakehub import FakeHub
from support.modelgen import tiny_lora_files, tiny_model_files

from hubd.cli.main import main
from hubd.config import Settings, load_settings
from hubd.context import Context

MODEL = "acme/tiny-llama"
LORA = "acme/tiny-llama-lora"
GATED = "acme/gated-llama"
# tests/pg.sh (`make test` runs pytest through it) starts a throwaway PostgreSQL and exports the
# URL; read at import because isolated_env clears HUBD_* for every test.
PG_URL = os.environ.get("HUBD_TEST_PG_URL")
PG_SKIP = os.environ.get("HUBD_TEST_PG") == "skip"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No HUBD_* or HF_* from the developer's shell; HUBD_HOME in the test's tmp dir."""
    for key in list(os.environ):
        if key.startswith("HUBD_") or key in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    monkeypatch.setenv("HUBD_HOME", str(home))
    monkeypatch.setenv("HUBD_NODE_NAME", "test-node")
    return home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test, dropped afterwards."""
    if PG_URL is None:
        if PG_SKIP:
            pytest.skip("HUBD_TEST_PG=skip")
        pytest.fail(
            "PostgreSQL tests need HUBD_TEST_PG_URL: run pytest through tests/pg.sh "
            "(`make test` does), or set HUBD_TEST_PG=skip to skip them"
        )
    server = make_url(PG_URL)
    name = f"hubd_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:  # FORCE: the CLI leaves pooled connections open
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The catalog tests run on both backends hubd supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    """A loopback Hub serving a tiny model, a LoRA adapter for it, and a gated copy."""
    fake = FakeHub()
    fake.add_repo(MODEL, tiny_model_files(seed=0), tags=["v1.0"])
    fake.add_repo(LORA, tiny_lora_files(base_model=MODEL))
    fake.add_repo(GATED, tiny_model_files(seed=2, license="llama3"), gated=True)
    fake.tokens.add("hf_valid_token")
    with fake:
        yield fake


@pytest.fixture
def policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write a policy file and point HUBD_POLICY at it."""

    def write(text: str) -> Path:
        path = tmp_path / "policy.toml"
        path.write_text(text)
        monkeypatch.setenv("HUBD_POLICY", str(path))
        return path

    return write


@pytest.fixture
def settings(home: Path, hub: FakeHub) -> Settings:
    return load_settings(endpoint=hub.endpoint)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    with Context.open(settings) as context:
        yield context


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The --json output of a run that must have succeeded."""
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def hubd(capsys: pytest.CaptureFixture[str]) -> object:
    """Run the CLI in-process, as `hubd ARGS…` would, returning exit code and output."""

    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


def hubd_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`hubd ARGS…` as a separate process (for kill -9 and concurrency tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "hubd.cli.main", *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
