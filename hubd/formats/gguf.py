"""GGUF metadata, read with the ``gguf`` package's reader (memory-mapped, no tensor data read)."""

from __future__ import annotations

from pathlib import Path


def gguf_string(path: Path, key: str) -> str | None:
    """A string metadata value, or None if absent or the file is not valid GGUF."""
    from gguf import GGUFReader, GGUFValueType  # numpy: 0.15 s of start-up, only for GGUF repos

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError, IndexError):
        return None
    field = reader.get_field(key)
    if field is None or not field.types or field.types[0] != GGUFValueType.STRING:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
