"""Whether a revision is a LoRA adapter, and which base model it applies to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ..catalog.revisions import CardRecord
from ..errors import InvalidModelFile
from .gguf import inspect

CONFIG_LIMIT = 1024 * 1024


def adapter_lineage(files: Mapping[str, Path], card: CardRecord) -> tuple[bool, str | None]:
    """(is_adapter, base model) from PEFT's adapter_config.json, GGUF metadata and the card.

    ``files`` maps repo paths to readable local paths of verified content.
    """
    base = card.base_model[0] if card.base_model else None
    is_adapter = card.base_model_relation == "adapter"
    config = files.get("adapter_config.json")
    if config is not None:
        is_adapter = True
        try:
            with config.open("rb") as fh:  # PEFT's config is a few hundred bytes
                doc = json.loads(fh.read(CONFIG_LIMIT))
        except (ValueError, RecursionError):
            doc = None
        declared = doc.get("base_model_name_or_path") if isinstance(doc, dict) else None
        if isinstance(declared, str) and declared:
            base = base or declared
    for path, local in files.items():
        if path.endswith(".gguf"):
            try:
                is_adapter = is_adapter or inspect(local, path).kind == "adapter"
            except InvalidModelFile:
                continue
    return is_adapter, base if is_adapter or card.base_model else None
