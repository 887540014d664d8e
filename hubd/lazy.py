"""Modules loaded on first use, so a command pays only for the stacks it touches.

`hubd mirror` of a revision already held never opens a byte transfer: importing aiohttp for it
cost a tenth of its start-up. ``aiohttp = lazy_module("aiohttp")`` keeps the module's name and
its attributes where the code uses them; the import runs at the first attribute read. Type
checkers see the real import (``if TYPE_CHECKING``), so nothing loses its types.
This is importlib's documented LazyLoader recipe.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """``name`` as a module object that imports itself when an attribute is first read."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
