"""What `pip install hubd` gets: the package and nothing of the tests, optional dependencies
only as extras, and a clear error (with the pip command) where a command needs a missing one."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hubd.catalog.db import open_catalog
from hubd.errors import ConfigError
from hubd.runtime.worker import Worker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(ROOT), "-w", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out,
    )
    assert build.returncode == 0, build.stderr
    return zipfile.ZipFile(next(out.glob("hubd-*.whl"))), build.stdout + build.stderr


@pytest.mark.slow
def test_the_wheel_holds_every_package_and_no_test_support(
    wheel: tuple[zipfile.ZipFile, str],
) -> None:
    archive, log = wheel
    assert "warning" not in log.lower(), log  # setuptools finds nothing to complain about
    names = set(archive.namelist())
    assert not [n for n in names if n.startswith("tests/") or "/testing/" in n]
    packages = [p.parent for p in (ROOT / "hubd").rglob("__init__.py")]
    expected = {f"{p.relative_to(ROOT).as_posix()}/__init__.py" for p in packages}
    expected |= {f"hubd/cli/{p.name}" for p in (ROOT / "cli").glob("*.py")}
    expected |= {"hubd/py.typed", "hubd/catalog/migrations/script.py.mako"}
    web = ROOT / "hubd" / "server" / "web"
    expected |= {p.relative_to(ROOT).as_posix() for p in web.glob("[st]*/*.*")}  # static, templates
    assert expected <= names, sorted(expected - names)


@pytest.mark.slow
def test_llama_and_postgres_are_extras_only(wheel: tuple[zipfile.ZipFile, str]) -> None:
    archive, _ = wheel
    metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    requires = [
        line.removeprefix("Requires-Dist: ")
        for line in archive.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist: ")
    ]
    core = [r for r in requires if "extra ==" not in r]
    assert not [r for r in core if r.startswith(("llama-cpp-python", "psycopg"))], core
    assert any(r.startswith("httpx2") for r in core)  # imported by hubd.sources.huggingface
    assert any(r.startswith("llama-cpp-python") and 'extra == "llama"' in r for r in requires)
    assert any(r.startswith("psycopg") and 'extra == "postgres"' in r for r in requires)


def test_a_postgres_catalog_without_the_driver_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError) as caught:
        open_catalog("postgresql://hubd@127.0.0.1:1/hubd")
    assert "psycopg" in caught.value.message and "hubd[postgres]" in (caught.value.hint or "")


async def test_running_a_model_without_llama_cpp_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(ConfigError) as caught:
        await Worker.start()
    assert "llama_cpp" in caught.value.message and "hubd[llama]" in (caught.value.hint or "")
