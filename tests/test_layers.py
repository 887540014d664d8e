"""Imports point down the layers only (docs/architecture.md): a lower layer never imports a
higher one, so the core can be read, tested and reused without what is built on it.

Every module must be placed in a layer below; a new module that is not fails here, on purpose:
deciding where it goes is part of writing it. Imports within one layer are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first. A name stands for the module and, for a package, everything in it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "ground",
        {
            "hubd",
            "hubd.errors",
            "hubd.extras",
            "hubd.hashes",
            "hubd.lazy",
            "hubd.gitobjects",
            "hubd.refs",
            "hubd.threads",
            "hubd.validation",
        },
    ),
    ("store, catalog, config", {"hubd.store", "hubd.catalog", "hubd.config"}),
    ("context", {"hubd.context", "hubd.journal"}),
    ("sources, model", {"hubd.sources", "hubd.model"}),
    ("trust", {"hubd.trust"}),
    ("audit", {"hubd.audit"}),
    ("use cases", {"hubd.ops"}),
    ("wings", {"hubd.bundle", "hubd.cluster", "hubd.proxy"}),
    ("server, runtime, daemon", {"hubd.server", "hubd.runtime", "hubd.daemon"}),
    ("cli", {"hubd.cli"}),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "cli":
        return "hubd.cli" if rel.stem == "__init__" else f"hubd.cli.{rel.stem}"
    name = ".".join(rel.with_suffix("").parts)
    return name.removesuffix(".__init__")


def _layer(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (length of the matching name, layer)
    for index, (_, names) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (
                best is None or len(name) > best[0]
            ):
                best = (len(name), index)
    return None if best is None else best[1]


def _imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every hubd and tests import, `from . import x` as `pkg.x`."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    if path.relative_to(ROOT).parts[0] == "cli":
        package = "hubd.cli"
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("hubd")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] in {"hubd", "tests"}:
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return found


def _sources() -> list[Path]:
    files = [*(ROOT / "hubd").rglob("*.py"), *(ROOT / "cli").glob("*.py")]
    return [p for p in files if "migrations" not in p.parts]


def _resolve(name: str, known: set[str]) -> str:
    """``hubd.x.y`` names a module, or a member of one: the longest known module prefix."""
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def test_every_module_has_a_layer() -> None:
    unplaced = [_module_name(p) for p in _sources() if _layer(_module_name(p)) is None]
    assert unplaced == [], f"place these modules in a layer of tests/test_layers.py: {unplaced}"


def test_imports_point_down_only() -> None:
    modules = {_module_name(p): p for p in _sources()}
    upward = []
    for module, path in modules.items():
        own = _layer(module)
        assert own is not None
        for line, name in _imports(path, module):
            target = _resolve(name, set(modules))
            if target.startswith("tests"):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports test support {target}")
                continue
            theirs = _layer(target)
            if theirs is not None and theirs > own:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[own][0]}) imports "
                    f"{target} ({LAYERS[theirs][0]})"
                )
    assert upward == []


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a store module importing the mirror is reported."""
    path = ROOT / "hubd" / "store" / "fs.py"
    imports = [*_imports(path, "hubd.store.fs"), (1, "hubd.ops.mirror.mirror")]
    layers = [
        _layer(_resolve(n, {"hubd.ops.mirror", "hubd.errors", "hubd.refs", "hubd.hashes"}))
        for _, n in imports
    ]
    assert max(x for x in layers if x is not None) > (_layer("hubd.store") or 0)
