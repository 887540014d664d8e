"""The error tree as documented matches the classes: errors.py's docstring and the README table.

X-Error-Code values and exit codes are a contract with scripts and HTTP clients; these tests
make the two places a person reads them fail loudly when a class changes and they do not.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import hubd.cli.main as cli_main
from hubd import errors
from hubd.errors import HubdError

README = Path(__file__).resolve().parent.parent / "README.md"

# The only X-Error-Code that is not its class's name. Changing or adding one is a wire change.
CODE_OVERRIDES = {"OfflineError": "Offline"}

# Exit codes the CLI returns itself, not through an error class.
CLI_EXIT_CODES = {130}  # interrupted (KeyboardInterrupt, click.Abort)


@dataclass
class Row:
    name: str
    depth: int
    parent: str | None
    exit_code: int | None  # None: the parent's
    http_status: int | None


ROW = re.compile(
    r"^(?P<prefix>(?:[│ ]   )*(?:[├└]── )?)(?P<name>[A-Z]\w*)"
    r"(?:\s+exit (?P<exit>\d+))?(?:\s+(?P<status>\d{3})(?!\S))?(?:\s+.*)?$"
)


def classes() -> dict[str, type[HubdError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, HubdError) and cls.__module__ == errors.__name__
    }


def docstring_tree() -> list[Row]:
    doc = errors.__doc__
    assert doc is not None
    _, _, block = doc.partition("::\n\n")
    assert block, "errors.py's docstring has no '::' block with the tree"
    rows: list[Row] = []
    stack: list[str] = []
    for line in block.splitlines():
        if not line.strip():
            break
        assert line.startswith("    "), f"tree line not indented: {line!r}"
        match = ROW.match(line[4:])
        assert match, f"cannot read tree line: {line!r}"
        prefix = match["prefix"]
        assert len(prefix) % 4 == 0, f"misaligned tree line: {line!r}"
        depth = len(prefix) // 4
        assert depth <= len(stack), f"{match['name']} is nested under nothing"
        del stack[depth:]
        rows.append(
            Row(
                name=match["name"],
                depth=depth,
                parent=stack[-1] if stack else None,
                exit_code=int(match["exit"]) if match["exit"] else None,
                http_status=int(match["status"]) if match["status"] else None,
            )
        )
        stack.append(match["name"])
    return rows


def readme_exit_codes() -> list[int]:
    text = README.read_text(encoding="utf-8")
    _, found, section = text.partition("### Errors and exit codes\n")
    assert found, "README has no 'Errors and exit codes' section"
    section = re.split(r"\n#{1,3} ", section, maxsplit=1)[0]
    return [int(m) for m in re.findall(r"^\| *(\d+) *\|", section, flags=re.MULTILINE)]


def test_docstring_tree_has_every_class_once() -> None:
    names = [row.name for row in docstring_tree()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"drawn more than once: {duplicates}"
    assert sorted(names) == sorted(classes()), (
        f"missing from the tree: {sorted(set(classes()) - set(names))}; "
        f"not classes: {sorted(set(names) - set(classes()))}"
    )


def test_docstring_tree_matches_classes() -> None:
    found = classes()
    drawn: dict[str, Row] = {}
    for row in docstring_tree():
        cls = found[row.name]
        if row.parent is None:
            assert cls is HubdError, f"{row.name} drawn as the root"
            assert row.exit_code is not None and row.http_status is not None
            exit_code, http_status = row.exit_code, row.http_status
        else:
            assert cls.__bases__ == (found[row.parent],), (
                f"{row.name} drawn under {row.parent}, "
                f"derives from {[b.__name__ for b in cls.__bases__]}"
            )
            parent = drawn[row.parent]
            exit_code = parent.exit_code if row.exit_code is None else row.exit_code
            http_status = parent.http_status if row.http_status is None else row.http_status
        assert (exit_code, http_status) == (cls.exit_code, cls.http_status), (
            f"{row.name}: drawn exit {exit_code} / {http_status}, "
            f"is exit {cls.exit_code} / {cls.http_status}"
        )
        drawn[row.name] = Row(row.name, row.depth, row.parent, exit_code, http_status)


def test_readme_table_lists_the_exit_codes_in_use() -> None:
    listed = readme_exit_codes()
    assert len(listed) == len(set(listed)), f"README lists an exit code twice: {listed}"
    used = {cls.exit_code for cls in classes().values()}
    assert set(listed) == used | CLI_EXIT_CODES, (
        f"README lists {sorted(listed)}; the classes use {sorted(used)}, "
        f"the CLI itself {sorted(CLI_EXIT_CODES)}"
    )


def test_the_cli_exits_130_when_interrupted(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main.cli, "main", interrupted)
    assert cli_main.main(["ls"]) == 130


def test_codes_are_class_names_except_the_pinned_ones() -> None:
    for name, cls in classes().items():
        assert cls.code == CODE_OVERRIDES.get(name, name), name


def test_a_new_subclass_gets_its_name_as_code() -> None:
    class SomethingNew(errors.UpstreamError):
        pass

    class Pinned(errors.OfflineError):
        code = "PinnedCode"

    assert SomethingNew("x").code == "SomethingNew"
    assert Pinned.code == "PinnedCode"
    assert errors.OfflineError.code == "Offline"  # a subclass does not change its parent's
