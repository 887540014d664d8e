"""Optional dependencies: llama.cpp (``hubd[llama]``) and the PostgreSQL driver
(``hubd[postgres]``) are installed only where they are used, so a node that only mirrors needs
no compiler. A command that needs one and lacks it fails with the pip command that adds it.
"""

from __future__ import annotations

import importlib.util

from .errors import ConfigError


def require(module: str, extra: str, purpose: str) -> None:
    """Raise ConfigError naming ``pip install 'hubd[extra]'`` unless ``module`` can be imported.

    Looks the module up without importing it (llama_cpp alone takes a third of a second).
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules holds None, the import is blocked
        found = False
    if not found:
        raise ConfigError(
            f"{purpose} needs the optional dependency {module!r}, which is not installed",
            hint=f"pip install 'hubd[{extra}]'",
        )
