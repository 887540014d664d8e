"""GGUF files: what they declare and whether llama.cpp can safely be handed them.

Metadata is read with the ``gguf`` package's reader (memory-mapped, no tensor data read), after a
bounded look at the fixed header so that a hostile file cannot make the reader loop over billions
of entries. The checks matter: llama-cpp-python 0.3.36 segfaults the whole process on a bad
``lora_path`` instead of raising, so nothing reaches it that these checks have not passed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidModelFile

MAGIC = b"GGUF"
MAX_TENSORS = 1_000_000
MAX_KV = 100_000


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    version: int
    architecture: str | None
    kind: str  # "model" or "adapter"
    adapter_type: str | None
    license: str | None
    tensors: dict[str, tuple[int, ...]]  # name -> shape, ggml order (ne0 = row length)
    context_length: int | None = None  # {architecture}.context_length

    @property
    def parameters(self) -> int:
        return sum(math.prod(shape) for shape in self.tensors.values())


def _string(reader: Any, key: str) -> str | None:
    from gguf import GGUFValueType

    field = reader.get_field(key)
    if field is None or not field.types or field.types[0] != GGUFValueType.STRING:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")


def _integer(reader: Any, key: str) -> int | None:
    from gguf import GGUFValueType

    field = reader.get_field(key)
    integers = {GGUFValueType.UINT32, GGUFValueType.UINT64, GGUFValueType.INT32}
    if field is None or len(field.types) != 1 or field.types[0] not in integers:
        return None
    return int(field.parts[field.data[0]][0])


def _reader(path: Path) -> Any:
    from gguf import GGUFReader  # numpy: 0.15 s of start-up, only for GGUF repos

    return GGUFReader(path)


def inspect(path: Path, label: str | None = None) -> GgufInfo:
    """Read and sanity-check a GGUF file's header, metadata and tensor table."""
    name = label or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise InvalidModelFile(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:4] != MAGIC:
        raise InvalidModelFile(f"{name}: not a GGUF file (bad magic)")
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (2, 3):
        raise InvalidModelFile(f"{name}: unsupported GGUF version {version}")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise InvalidModelFile(f"{name}: implausible header ({n_tensors} tensors, {n_kv} keys)")
    try:
        reader = _reader(path)
    except (ValueError, IndexError, KeyError, OSError, struct.error) as exc:
        raise InvalidModelFile(f"{name}: malformed GGUF: {exc}") from None
    tensors: dict[str, tuple[int, ...]] = {}
    for tensor in reader.tensors:
        end = int(tensor.data_offset) + int(tensor.n_bytes)
        if end > size:
            raise InvalidModelFile(
                f"{name}: tensor {tensor.name} ends at byte {end}, past the file's {size} bytes"
            )
        tensors[tensor.name] = tuple(int(d) for d in tensor.shape)
    kind = _string(reader, "general.type") or "model"
    architecture = _string(reader, "general.architecture")
    return GgufInfo(
        path=path,
        version=version,
        architecture=architecture,
        kind="adapter" if kind == "adapter" else "model",
        adapter_type=_string(reader, "adapter.type"),
        license=_string(reader, "general.license"),
        tensors=tensors,
        context_length=_integer(reader, f"{architecture}.context_length") if architecture else None,
    )


def check_model(parts: Sequence[GgufInfo]) -> str:
    """A loadable model (all parts of a split file): returns its architecture."""
    first = parts[0]
    if any(p.kind == "adapter" for p in parts):
        raise InvalidModelFile(f"{first.path.name} is a LoRA adapter, not a model")
    if not first.architecture:
        raise InvalidModelFile(f"{first.path.name}: no general.architecture")
    if not any(p.tensors for p in parts):
        raise InvalidModelFile(f"{first.path.name}: no tensors")
    return first.architecture


def check_lora(lora: GgufInfo, base: Sequence[GgufInfo]) -> None:
    """An adapter llama.cpp can apply to ``base`` without crashing."""
    name = lora.path.name
    if lora.kind != "adapter" or lora.adapter_type != "lora":
        raise InvalidModelFile(
            f"{name} is not a LoRA adapter (general.type={lora.kind}, adapter.type="
            f"{lora.adapter_type}); pass a model as the repo and an adapter to --lora"
        )
    arch = check_model(base)
    if lora.architecture != arch:
        raise InvalidModelFile(
            f"{name} is a LoRA for {lora.architecture!r}, the base model is {arch!r}"
        )
    weights = {k: v for part in base for k, v in part.tensors.items()}
    pairs = {t.rsplit(".", 1)[0] for t in lora.tensors if t.endswith((".lora_a", ".lora_b"))}
    if not pairs:
        raise InvalidModelFile(f"{name}: no lora_a/lora_b tensors")
    for target in sorted(pairs):
        a, b = lora.tensors.get(f"{target}.lora_a"), lora.tensors.get(f"{target}.lora_b")
        if a is None or b is None:
            raise InvalidModelFile(f"{name}: {target} has only one of lora_a and lora_b")
        w = weights.get(target)
        if w is None:
            raise InvalidModelFile(f"{name}: {target} does not exist in the base model")
        # ggml order: W = [in, out], lora_a = [in, r], lora_b = [r, out]
        fits = len(w) == len(a) == len(b) == 2 and (a[0], b[1], a[1]) == (w[0], w[1], b[0])
        if not fits:
            raise InvalidModelFile(
                f"{name}: {target} shapes lora_a {list(a)} x lora_b {list(b)} do not fit "
                f"the base tensor {list(w)}"
            )
