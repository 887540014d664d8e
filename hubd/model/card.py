"""Model-card metadata as the catalog records it, parsed by huggingface_hub's ModelCard."""

from __future__ import annotations

from typing import Any

from ..catalog.revisions import CardRecord
from ..sources.modelinfo import CARD_DEPTH, json_depth


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or None
    return str(value)


def card_record(text: str | None, fallback: dict[str, Any], gated: str | None) -> CardRecord:
    """Card fields from README.md when the revision has one, else from the source's cardData."""
    data = fallback
    if text is not None:
        from huggingface_hub import ModelCard  # yaml + jinja: deferred to keep start-up fast

        try:
            card = ModelCard(text, ignore_metadata_errors=True)
            data = card.data.to_dict()  # type: ignore[no-untyped-call]
        except (ValueError, RecursionError, MemoryError):
            data = {}  # front matter no parser should have to take: no card metadata
    if not isinstance(data, dict) or json_depth(data) > CARD_DEPTH:
        data = {}  # the catalog keeps card metadata as JSON of bounded depth
    return CardRecord(
        license=_as_str(data.get("license")),
        license_name=_as_str(data.get("license_name")),
        license_link=_as_str(data.get("license_link")),
        base_model=_as_list(data.get("base_model")),
        base_model_relation=_as_str(data.get("base_model_relation")),
        datasets=_as_list(data.get("datasets")),
        tags=_as_list(data.get("tags")),
        pipeline_tag=_as_str(data.get("pipeline_tag")),
        library_name=_as_str(data.get("library_name")),
        language=_as_list(data.get("language")),
        gated=gated,
        data=data,
        text=text,
    )
