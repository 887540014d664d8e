"""safetensors files: whether the header is well formed, judged by the safetensors parser itself.

Its parser bounds the header size, rejects bad JSON, unknown dtypes, offsets out of range,
overlapping or gapped tensors and files the tensors do not exactly cover, and reads no tensor data
(the file is memory-mapped). Loaders that fail on these would fail later, less clearly.
"""

from __future__ import annotations

from pathlib import Path


def header_problem(path: Path) -> str | None:
    """What is wrong with the file's header, or None if safetensors accepts it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            f.keys()
    except SafetensorError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return None
