"""Serving a blob that lives in object storage (``[store] backend = "s3"``).

Streamed from the bucket (one ranged GetObject, chunk by chunk, memory flat in the file's size),
or with ``s3.redirect`` a 302 to a presigned URL valid for minutes, as the Hub sends clients to
its CDN: the daemon keeps metadata and auth, the bucket carries the bytes. The object is opened
before the status is sent, so a missing blob is a 404 and an unreachable store a 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web

from ..errors import EntryNotFound
from ..store.s3 import S3Store


async def object_response(
    request: web.Request,
    store: S3Store,
    sha256: str,
    size: int,
    span: tuple[int, int] | None,
    headers: dict[str, str],
    served: dict[str, int],
) -> web.StreamResponse:
    """The blob's bytes (whole or ``span``: offset, count), or a redirect to them."""
    url = await asyncio.to_thread(store.presigned_url, sha256)
    if url is not None:
        return web.Response(status=302, headers={**headers, "Location": url})
    offset, count = span or (0, size)
    chunks: Iterator[bytes] = iter(())
    if request.method != "HEAD" and count:
        try:
            chunks = await asyncio.to_thread(store.read_range, sha256, offset, count)
        except FileNotFoundError:
            raise EntryNotFound(f"blob {sha256} is not in the object store") from None
    response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
    if span is not None:
        response.headers["Content-Range"] = f"bytes {offset}-{offset + count - 1}/{size}"
    response.content_type = "application/octet-stream"
    response.content_length = count
    await response.prepare(request)
    sent = 0
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        await response.write(chunk)
        sent += len(chunk)
    if request.method != "HEAD":
        served["bytes"] += sent
    await response.write_eof()
    return response
