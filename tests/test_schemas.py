"""Every schema is valid JSON Schema, is what its pydantic model writes (tools/schemas.py), and
every example validates (examples are loaded by hubd)."""

import importlib.util
import json
import tomllib
from pathlib import Path
from types import ModuleType

import jsonschema
import pytest

from hubd.config import load_settings

SCHEMAS = Path(__file__).parent.parent / "schemas"


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "schemas_tool", SCHEMAS.parent / "tools/schemas.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMAS / name).read_text())
    return loaded


@pytest.mark.parametrize("path", sorted(SCHEMAS.glob("*.schema.json")), ids=lambda p: p.name)
def test_schema_is_valid(path: Path) -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))


def test_every_schema_has_a_model() -> None:
    assert sorted(p.name for p in SCHEMAS.glob("*.schema.json")) == sorted(TOOL.MODELS)


@pytest.mark.parametrize("name", sorted(TOOL.MODELS))
def test_committed_schema_is_what_its_model_writes(name: str) -> None:
    """Drift: edit the model, then `make schemas`; never the JSON by hand."""
    assert (SCHEMAS / name).read_text() == TOOL.render(name), f"run `make schemas` ({name})"


def test_example_config_validates_and_loads(tmp_path: Path) -> None:
    text = (SCHEMAS.parent / "deploy" / "hubd.example.toml").read_text()
    jsonschema.validate(tomllib.loads(text), schema("config.schema.json"))
    (tmp_path / "hubd.toml").write_text(text)
    settings = load_settings({"HUBD_HOME": str(tmp_path)})
    assert settings.node_name == "registry-1" and settings.parts == 32


def validate(name: str, instance: object) -> None:
    """Validate a hubd output against schemas/NAME (used by the CLI tests)."""
    jsonschema.validate(instance, schema(name), format_checker=jsonschema.FormatChecker())
