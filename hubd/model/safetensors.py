"""safetensors files: whether the header is well formed, judged by the safetensors parser itself,
and the headers and index of a sharded model as the Hub's safetensors-metadata route sends them.

Its parser bounds the header size, rejects bad JSON, unknown dtypes, offsets out of range,
overlapping or gapped tensors and files the tensors do not exactly cover, and reads no tensor data
(the file is memory-mapped). Loaders that fail on these would fail later, less clearly.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import StrictStr, ValidationError

from ..errors import InvalidModelFile
from ..validation import Open, problem

HEADER_LIMIT = 100 * 1024 * 1024  # safetensors' own bound on a header
INDEX_LIMIT = 64 * 1024 * 1024  # a model.safetensors.index.json of 100,000 tensors is ~10 MiB


class Index(Open):
    """model.safetensors.index.json: which shard holds each tensor (and optional metadata)."""

    metadata: dict[str, Any] | None = None
    weight_map: dict[StrictStr, StrictStr]


def read_index(blob: BinaryIO, size: int, name: str) -> Index:
    """The index of a sharded model, bounded and checked as what a source sent."""
    if size > INDEX_LIMIT:
        raise InvalidModelFile(f"{name}: {size} bytes, more than a safetensors index may be")
    try:
        return Index.model_validate(json.loads(blob.read(size)))
    except (ValueError, RecursionError) as exc:  # ValidationError is a ValueError
        why = problem(exc) if isinstance(exc, ValidationError) else "not JSON"
        raise InvalidModelFile(f"{name}: not a safetensors index: {why}") from None


def read_header(blob: BinaryIO, size: int, name: str) -> dict[str, Any]:
    """The JSON header of a safetensors file (``__metadata__`` and one entry per tensor), read
    without the tensors: 8 bytes of little-endian length, then that much JSON."""
    head = blob.read(8)
    length = int.from_bytes(head, "little") if len(head) == 8 else -1
    if length < 0 or length > HEADER_LIMIT or 8 + length > size:
        raise InvalidModelFile(f"{name}: not a safetensors file (header length {length})")
    try:
        header = json.loads(blob.read(length))
    except (ValueError, RecursionError):
        raise InvalidModelFile(f"{name}: the safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise InvalidModelFile(f"{name}: the safetensors header is not a JSON object")
    return header


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


def parameters(header: dict[str, Any], name: str) -> dict[str, int]:
    """Parameters per dtype in one file's header (the product of each tensor's shape)."""
    counts: dict[str, int] = {}
    for tensor_name, tensor in header.items():
        if tensor_name == "__metadata__":
            continue
        dtype = tensor.get("dtype") if isinstance(tensor, dict) else None
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise InvalidModelFile(f"{name}: tensor {tensor_name[:80]!r} has no dtype or shape")
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise InvalidModelFile(f"{name}: tensor {tensor_name[:80]!r} has a bad shape")
        counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    return counts
