"""`GET /api/models`: the Hub's model search, answered from the catalog.

Only repos with a verified revision are listed, each with its latest verified one. The keys are
the Hub's (``_id``, ``id``, ``modelId``, ``private``, ``tags``, ``createdAt``, …) where hubd can
fill them honestly; what it cannot know (likes, downloads, trending score) is left out rather
than invented, which huggingface_hub's ``ModelInfo`` accepts. Pages follow the Hub's
``Link: <…&cursor=…>; rel="next"``, an opaque keyset cursor, never an offset.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import ValidationError

from ..catalog.listing import HubModel, HubModelPage, hub_models
from ..errors import InvalidRequest
from ..validation import Closed
from .hfapi import CONTEXT, MAX_QUERY

PK = re.compile(r"[0-9]{1,18}")  # a revision pk, within every backend's BIGINT
PAGE = 1000  # the Hub's default and largest page
SORTS = {"id": False, "lastModified": True, "createdAt": True, "last_modified": True}
# The Hub's expand properties (huggingface_hub's ExpandModelProperty_T): any may be asked;
# hubd answers those summary() knows and omits the rest, as the Hub omits what a repo lacks.
HUB_EXPAND = {
    "author", "baseModels", "cardData", "childrenModelCount", "config", "createdAt", "disabled",
    "downloads", "downloadsAllTime", "evalResults", "gated", "gguf", "inference",
    "inferenceProviderMapping", "lastModified", "library_name", "likes", "mask_token",
    "model-index", "pipeline_tag", "private", "resourceGroup", "safetensors", "sha", "siblings",
    "spaces", "tags", "transformersInfo", "trendingScore", "usedStorage", "widgetData",
}  # fmt: skip
DEFAULT = ("private", "tags", "createdAt", "pipeline_tag", "library_name")
FULL = (*DEFAULT, "author", "sha", "lastModified", "gated", "disabled", "siblings")


class Cursor(Closed):
    """What a ``cursor`` carries back: the key of the last repo of the previous page."""

    at: str
    key: str


def _time(model: HubModel) -> str:
    return model.mirrored_at.isoformat().replace("+00:00", "Z")


def summary(model: HubModel, fields: set[str]) -> dict[str, Any]:
    """One entry of the list: ``_id``, ``id`` and ``modelId`` always, else what was asked."""
    values: dict[str, Any] = {
        "author": model.repo_id.split("/", 1)[0],
        "cardData": model.card_data,
        "createdAt": _time(model),
        "disabled": False,
        "gated": False,
        "lastModified": _time(model),
        "library_name": model.library_name,
        "pipeline_tag": model.pipeline_tag,
        "private": False,
        "sha": model.commit,
        "siblings": [{"rfilename": path} for path, _ in model.files],
        "tags": model.tags,
    }
    entry: dict[str, Any] = {"_id": model.commit[:24], "id": model.repo_id}
    entry |= {k: values[k] for k in sorted(fields) if k in values and values[k] is not None}
    entry["modelId"] = model.repo_id
    return entry


def _fields(request: web.Request) -> set[str]:
    expand = request.query.getall("expand[]", []) + request.query.getall("expand", [])
    flag = {"1", "true", "True"}
    if expand:
        unknown = sorted(set(expand) - HUB_EXPAND)
        if unknown:
            raise InvalidRequest(f"unknown expand properties: {', '.join(unknown)}")
        return set(expand)
    fields = set(FULL if request.query.get("full") in flag else DEFAULT)
    if request.query.get("cardData") in flag:
        fields.add("cardData")
    return fields


def _cursor(text: str | None, by_time: bool) -> tuple[str, str] | None:
    if text is None:
        return None
    try:
        cursor = Cursor.model_validate_json(base64.urlsafe_b64decode(text.encode("ascii")))
        if by_time and not (PK.fullmatch(cursor.key) and datetime.fromisoformat(cursor.at)):
            raise ValueError(cursor.key)
    except (ValueError, ValidationError, binascii.Error, UnicodeEncodeError):
        raise InvalidRequest("bad cursor: pass back the one a Link header gave") from None
    return cursor.at, cursor.key


def _encode(key: tuple[str, str]) -> str:
    raw = json.dumps({"at": key[0], "key": key[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii")


async def list_models(request: web.Request) -> web.Response:
    """GET /api/models?search=&author=&filter=&sort=&direction=&limit=&full=&cardData=&expand[]="""
    query = request.query
    if len(request.query_string) > MAX_QUERY:
        raise InvalidRequest("query string too long")
    sort = query.get("sort", "id")
    if sort not in SORTS:
        raise InvalidRequest(f"sort must be one of {', '.join(SORTS)} here, not {sort!r}")
    direction = query.get("direction", "-1" if "sort" in query else "1")
    if direction not in ("1", "-1"):
        raise InvalidRequest("direction must be 1 or -1")
    try:
        limit = min(int(query.get("limit", str(PAGE))), PAGE)
    except ValueError:
        raise InvalidRequest("limit must be a number") from None
    if limit < 1:
        raise InvalidRequest("limit must be positive")
    fields = _fields(request)
    tags = [t for t in query.getall("filter", []) + query.getall("pipeline_tag", []) if t]
    after = _cursor(query.get("cursor"), SORTS[sort])
    ctx = request.app[CONTEXT]

    def page() -> HubModelPage:
        with ctx.catalog() as session:
            return hub_models(
                session,
                limit=limit,
                after=after,
                search=query.get("search"),
                author=query.get("author"),
                by_time=SORTS[sort],
                descending=direction == "-1",
                tags=tags,
                with_files="siblings" in fields,
                with_card_data="cardData" in fields,
            )

    found = await asyncio.to_thread(page)
    response = web.json_response([summary(m, fields) for m in found.models])
    if found.next is not None:
        rest = [(k, v) for k, v in query.items() if k != "cursor"]
        link = (
            f"{request.url.with_query(None)}?{urlencode([*rest, ('cursor', _encode(found.next))])}"
        )
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response
