"""Where blobs live: on local disk (:mod:`.fs`) or in S3-compatible object storage (:mod:`.s3`).

Both implement :class:`Store`'s methods; :func:`open_store` builds the one the settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..extras import require
from .fs import (
    BlobWriter,
    Expected,
    Store,
    check_commit,
    check_repo_id,
    check_sha256,
    open_regular,
    temp_path,
)

if TYPE_CHECKING:
    from ..config import Settings


def open_store(settings: Settings) -> Store:
    """The store ``[store] backend`` names: the directory, or the bucket and its local cache."""
    if settings.store_backend == "fs":
        return Store(settings.store_dir)
    require("boto3", "s3", 'store.backend = "s3"')
    from .cache import BlobCache
    from .s3 import S3Store, make_client

    if not settings.s3_bucket:
        raise ConfigError('store.backend = "s3" needs store.s3.bucket (HUBD_S3_BUCKET)')
    client = make_client(settings.s3_endpoint, settings.s3_region, settings.s3_credentials_file)
    return S3Store(
        settings.store_dir,
        client,
        settings.s3_bucket,
        settings.s3_prefix,
        settings.node_name,
        BlobCache(settings.cache_path, settings.cache_max_size),
        redirect=settings.s3_redirect,
    )


__all__ = [
    "BlobWriter",
    "Expected",
    "Store",
    "check_commit",
    "check_repo_id",
    "check_sha256",
    "open_regular",
    "open_store",
    "temp_path",
]
