"""Blobs in S3-compatible object storage (``[store] backend = "s3"``): AWS S3, MinIO, Ceph RGW,
SeaweedFS, R2, GCS interop.

The client is boto3. The store's API is blocking and already runs in threads (writers are
entered and committed off the event loop, verify hashes on a thread pool), so a synchronous
client fits without a second event loop; botocore is the reference implementation of SigV4 and
presigning, retries throttling, and knows the quirks of S3-compatible servers (path-style
addressing, optional checksums). obstore is faster, but its multipart writer hides the part
numbers and UploadPartCopy this store's resume and commit are built on.

Layout under ``<bucket>/<prefix>``::

    blobs/sha256/ab/<digest>          verified content only: made by CompleteMultipartUpload
    tmp/<node>/<key>/<00001>          a transfer in progress, one object per part (resumable)
    quarantine/                       (local, as on disk: ``hubd verify --repair`` sets aside)

Bytes stream through sha256 (and the git blob sha1) into parts of ``part_size`` bytes staged
under ``tmp/``. S3 cannot read back the parts of an incomplete multipart upload, so staged
parts are plain objects: after a crash the next writer lists them, reads them back through the
hash and continues from their end. Only when size and digest match does the commit open a
multipart upload at the digest's key, copy each staged part in server side (UploadPartCopy: no
byte passes through the daemon again) and complete it; any failure aborts it. Nothing
unverified is ever readable under ``blobs/``; a crash leaves staged parts (resumed) or an
incomplete multipart upload, both removed by ``hubd gc`` after ``UPLOAD_GRACE``.

Snapshots, refs, signatures and the git-blob index stay on local disk (the catalog is the
truth for them); the snapshot links point into the local cache (:mod:`.cache`), where blobs a
path must name (llama.cpp, GGUF headers) are copied and verified on first use.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, TypeVar

from ..errors import StoreUnavailable
from ..hashes import CHUNK
from ..refs import is_sha256
from .cache import BlobCache
from .fs import BlobWriter, Expected, Store, check_sha256, open_regular, stream_digest

PART_SIZE = 16 * 1024 * 1024  # every part but the last is at least S3's 5 MiB minimum
MAX_PARTS = 9000  # S3 allows 10000; larger files get larger parts
UPLOAD_GRACE = 24 * 3600.0  # staged parts and multipart uploads older than this are abandoned
PRESIGN_SECONDS = 300
PARTS_IN_FLIGHT = 2  # parts uploading while the next arrives (each PART_SIZE in memory)

T = TypeVar("T")


def part_size(size: int) -> int:
    """The part size for a blob of ``size`` bytes: the same on every run, so a resume lines up."""
    mib = 1024 * 1024
    return max(PART_SIZE, math.ceil(size / MAX_PARTS / mib) * mib)


def read_credentials(path: Path) -> dict[str, str]:
    """``KEY=value`` lines (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values


def make_client(endpoint: str | None, region: str, credentials_file: Path | None) -> Any:
    """A boto3 S3 client: path-style, SigV4, checksums only where S3 requires them."""
    import boto3
    from botocore.config import Config

    keys: dict[str, str] = {}
    if credentials_file is not None:
        found = read_credentials(credentials_file)
        keys = {
            "aws_access_key_id": found.get("AWS_ACCESS_KEY_ID", ""),
            "aws_secret_access_key": found.get("AWS_SECRET_ACCESS_KEY", ""),
        }
        if found.get("AWS_SESSION_TOKEN"):
            keys["aws_session_token"] = found["AWS_SESSION_TOKEN"]
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=64,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config, **keys)


def _missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


class _Body(io.RawIOBase):
    """An object's body as a raw binary stream (readinto, as hashlib.file_digest wants)."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


class S3Store(Store):
    """The filesystem store's interface, with blobs in a bucket and a local cache."""

    local_blobs = False

    def __init__(
        self,
        root: Path,
        client: Any,
        bucket: str,
        prefix: str,
        node: str,
        cache: BlobCache,
        *,
        redirect: bool = False,
    ) -> None:
        super().__init__(root)
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.node = re.sub(r"[^A-Za-z0-9._-]", "_", node) or "node"
        self.cache = cache
        self.redirect = redirect
        self.blobs_dir = cache.blobs_dir  # snapshot links and blob_path name the cached copy

    # -- the bucket -------------------------------------------------------------------------

    def call(self, what: str, operation: Callable[..., T], **kwargs: Any) -> T:
        """One S3 request; a connection failure or a server error is StoreUnavailable (503)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return operation(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            if _missing(exc):
                raise FileNotFoundError(errno.ENOENT, f"{what}: not in the bucket") from None
            raise StoreUnavailable(
                f"object store {self.bucket}: {what}: {exc}",
                hint="check [store] s3.* and the object store; nothing was lost, retry",
            ) from None
        except BotoCoreError as exc:
            raise StoreUnavailable(
                f"object store {self.bucket}: {what}: {exc}",
                hint="check that the object store is up; nothing was lost, retry",
            ) from None

    def blob_key(self, sha256: str) -> str:
        check_sha256(sha256)
        return f"{self.prefix}blobs/sha256/{sha256[:2]}/{sha256}"

    def staging_prefix(self, key: str) -> str:
        return f"{self.prefix}tmp/{self.node}/{key}/"

    def list_objects(self, prefix: str) -> Iterator[dict[str, Any]]:
        token: dict[str, str] = {}
        while True:
            page = self.call("list", self.client.list_objects_v2, Prefix=prefix, **token)
            yield from page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def delete_keys(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self.call("delete", self.client.delete_objects, Delete={"Objects": batch})

    def object_size(self, sha256: str) -> int | None:
        try:
            head = self.call(sha256, self.client.head_object, Key=self.blob_key(sha256))
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    def read_range(self, sha256: str, start: int = 0, count: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``start`` (``count`` of them, else to the end), in chunks."""
        kwargs: dict[str, Any] = {}
        if start or count is not None:
            last = "" if count is None else str(start + count - 1)
            kwargs["Range"] = f"bytes={start}-{last}"
        answer = self.call(sha256, self.client.get_object, Key=self.blob_key(sha256), **kwargs)
        return self._chunks(answer["Body"], sha256)

    def _chunks(self, body: Any, what: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        try:
            with body:
                while chunk := body.read(CHUNK):
                    yield chunk
        except BotoCoreError as exc:
            raise StoreUnavailable(f"object store {self.bucket}: reading {what}: {exc}") from None

    # -- the Store interface ----------------------------------------------------------------

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        found = self.object_size(sha256)
        return found is not None and (size is None or found == size)

    def open_blob(self, sha256: str) -> int:
        """A descriptor on the verified local copy (filled from the bucket on first use)."""
        return open_regular(self.local_blob(sha256))

    def open_read(self, sha256: str) -> BinaryIO:
        answer = self.call(sha256, self.client.get_object, Key=self.blob_key(sha256))
        return io.BufferedReader(_Body(answer["Body"]), CHUNK)

    def local_blob(self, sha256: str) -> Path:
        cached = self.cache.get(sha256)
        if cached is not None:
            return cached
        size = self.object_size(sha256)
        if size is None:
            raise FileNotFoundError(errno.ENOENT, "blob not in the bucket", sha256)
        return self.cache.fill(sha256, size, self.read_range(sha256))

    def digest_of(self, sha256: str) -> str | None:
        """The object's sha256 as the bucket holds it now (never the cached copy's)."""
        try:
            blob = self.open_read(sha256)
        except FileNotFoundError:
            return None
        return stream_digest(blob)

    def presigned_url(self, sha256: str) -> str | None:
        if not self.redirect:
            return None
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.blob_key(sha256)},
            ExpiresIn=PRESIGN_SECONDS,
        )
        return url

    def adopt(self, path: Path, sha256: str, size: int) -> None:
        """Upload a verified local file through a writer (hashed again on the way)."""
        with self.writer(Expected(f"blobs/{sha256}", size, sha256)) as writer:
            if writer.present is not None:
                return
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    writer.write(chunk)
            writer.commit()
        path.unlink(missing_ok=True)

    def quarantine(self, sha256: str, target: Path) -> bool:
        """Copy the damaged object to local ``target``, then delete it from the bucket."""
        try:
            chunks = self.read_range(sha256)
            with target.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        except FileNotFoundError:
            target.unlink(missing_ok=True)
            return False
        self.call(sha256, self.client.delete_object, Key=self.blob_key(sha256))
        self.cache.drop(sha256)
        return True

    def writer(self, expected: Expected) -> BlobWriter:
        return S3BlobWriter(self, expected)

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Every object named as a blob is, with the path of its (possibly absent) local copy."""
        for entry in self.list_objects(f"{self.prefix}blobs/sha256/"):
            name = entry["Key"].rsplit("/", 1)[-1]
            if is_sha256(name) and entry["Key"] == self.blob_key(name):
                yield name, self.blob_path(name)

    def strays(self) -> list[Path]:
        """Keys under blobs/ that are not a blob's (written there by something else)."""
        return [
            Path(entry["Key"])
            for entry in self.list_objects(f"{self.prefix}blobs/")
            if not is_sha256(name := entry["Key"].rsplit("/", 1)[-1])
            or entry["Key"] != self.blob_key(name)
        ]

    def collect_garbage(self, keep: set[str], partials: bool = False) -> tuple[int, int]:
        """Delete unreferenced objects, staged parts and multipart uploads older than the grace
        (with ``partials`` this node's staged parts at once), the cache's copies of what went:
        (count, bytes). The local guard does not reach the other nodes sharing the bucket: an
        object younger than ``UPLOAD_GRACE`` may be one a mirror elsewhere has not recorded
        yet, a staged part one it is still writing."""
        count = freed = 0
        doomed = []
        young = time.time() - UPLOAD_GRACE  # another node's mirror may not have recorded it yet
        for entry in list(self.list_objects(f"{self.prefix}blobs/sha256/")):
            digest = entry["Key"].rsplit("/", 1)[-1]
            if not is_sha256(digest) or entry["Key"] != self.blob_key(digest) or digest in keep:
                continue
            if entry["LastModified"].timestamp() < young:
                doomed.append(entry["Key"])
                self.cache.drop(digest)
                freed += int(entry["Size"])
        self.delete_keys(doomed)
        count += len(doomed)
        ours = f"{self.prefix}tmp/{self.node}/"  # under the exclusive guard: none in progress
        staged = [
            entry
            for entry in self.list_objects(f"{self.prefix}tmp/")
            if entry["LastModified"].timestamp() < young
            or (partials and entry["Key"].startswith(ours))
        ]
        self.delete_keys([entry["Key"] for entry in staged])
        freed += sum(int(entry["Size"]) for entry in staged)
        count += len({entry["Key"].rsplit("/", 1)[0] for entry in staged})
        for upload in self.stale_uploads(young):  # a commit takes seconds: these were left
            self.call(
                "abort",
                self.client.abort_multipart_upload,
                Key=upload["Key"],
                UploadId=upload["UploadId"],
            )
            count += 1
        more, extra = self._collect_local(keep, partials)
        self.cache.evict()
        return count + more, freed + extra

    def stale_uploads(self, cutoff: float) -> list[dict[str, Any]]:
        """Incomplete multipart uploads under the prefix begun before ``cutoff`` (epoch)."""
        found = []
        marker: dict[str, str] = {}
        while True:
            page = self.call(
                "list uploads", self.client.list_multipart_uploads, Prefix=self.prefix, **marker
            )
            found += [u for u in page.get("Uploads", []) if _epoch(u["Initiated"]) < cutoff]
            if not page.get("IsTruncated"):
                return found
            marker = {
                "KeyMarker": page["NextKeyMarker"],
                "UploadIdMarker": page["NextUploadIdMarker"],
            }


def _epoch(when: datetime) -> float:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class S3BlobWriter(BlobWriter):
    """:class:`BlobWriter`'s contract on a bucket: staged parts, then a verified commit.

    The per-content lock is the local one (tmp/<key>.lock): staging is per node, so daemons
    that share the bucket never write the same staged part.
    """

    store: S3Store

    def __init__(self, store: S3Store, expected: Expected) -> None:
        super().__init__(store, expected)
        self.part_size = part_size(expected.size)
        self.staging = store.staging_prefix(expected.key)
        self._parts: list[str] = []
        self._buffer = bytearray()
        self._uploads: list[Future[None]] = []
        self._pool: ThreadPoolExecutor | None = None

    def _open(self) -> BlobWriter:
        digest = self.expected.sha256 or self.store.known_git_blob(self.expected.git_oid)
        if digest and self.store.has_blob(digest, self.expected.size):
            self.present = digest
            return self
        self._reset_hashes()
        staged = sorted(self.store.list_objects(self.staging), key=lambda e: str(e["Key"]))
        keep: list[str] = []
        stale: list[str] = []
        offset = 0
        for number, entry in enumerate(staged, start=1):
            size = int(entry["Size"])
            whole = size == self.part_size or offset + size == self.expected.size
            if stale or entry["Key"] != self._part_key(number) or not whole:
                stale.append(entry["Key"])
                continue
            if offset + size > self.expected.size:
                stale.append(entry["Key"])
                continue
            keep.append(entry["Key"])
            offset += size
        self.store.delete_keys(stale)
        for key in keep:  # the prefix is hashed again, as read back from the bucket
            answer = self.store.call(key, self.store.client.get_object, Key=key)
            for chunk in self.store._chunks(answer["Body"], key):
                self._update(chunk)
        self._parts = keep
        self.offset = offset
        return self

    def _part_key(self, number: int) -> str:
        return f"{self.staging}{number:05d}"

    def _put(self, data: bytes) -> None:
        """Upload a part in the background while the next one arrives: at most
        ``PARTS_IN_FLIGHT`` parts are held, so memory stays flat in the file size."""
        key = self._part_key(len(self._parts) + 1)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="s3-part")
        call = self.store.call
        self._uploads.append(
            self._pool.submit(call, key, self.store.client.put_object, Key=key, Body=data)
        )
        self._parts.append(key)
        while len(self._uploads) > PARTS_IN_FLIGHT:
            self._uploads.pop(0).result()

    def _settle(self) -> None:
        """Wait for the parts in flight; the first failure is raised."""
        uploads, self._uploads = self._uploads, []
        failures = [f.exception() for f in uploads]
        for failure in failures:
            if failure is not None:
                raise failure

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            with contextlib.suppress(Exception):  # what failed was raised where it mattered
                self._settle()
            if self._pool is not None:
                self._pool.shutdown()
        finally:
            super().__exit__(kind, exc, tb)

    def restart(self) -> None:
        self._drop_staged()
        self._reset_hashes()

    def write(self, chunk: bytes) -> None:
        self._refuse_overflow(chunk)
        with self._io:
            self._update(chunk)
            self._buffer += chunk
            self.offset += len(chunk)
            while len(self._buffer) >= self.part_size:
                self._put(bytes(self._buffer[: self.part_size]))
                del self._buffer[: self.part_size]

    def discard(self) -> None:
        self._drop_staged()

    def _drop_staged(self) -> None:
        with contextlib.suppress(Exception):  # parts are deleted whether they landed or not
            self._settle()
        self.store.delete_keys(self._parts)
        self._parts, self._buffer, self.offset = [], bytearray(), 0

    def commit(self) -> str:
        """Check size and digests, then make the object from the staged parts. Returns sha256."""
        exp = self.expected
        digest = self.verified_digest()
        with self._io:
            if self._buffer:
                self._put(bytes(self._buffer))
                self._buffer = bytearray()
            self._settle()
        if not self.store.has_blob(digest, exp.size):
            self._complete(self.store.blob_key(digest))
        self.store.delete_keys(self._parts)
        self._parts = []
        if exp.git_oid and not exp.sha256:
            self.store.remember_git_blob(exp.git_oid, digest)
        self.present = digest
        return digest

    def _complete(self, key: str) -> None:
        """One multipart upload at the digest's key from the staged parts; aborted on failure."""
        store, client = self.store, self.store.client
        if not self._parts:  # an empty file: there is nothing to copy
            store.call(key, client.put_object, Key=key, Body=b"")
            return
        upload = store.call(key, client.create_multipart_upload, Key=key)["UploadId"]
        try:
            done = []
            for number, part in enumerate(self._parts, start=1):
                answer = store.call(
                    key,
                    client.upload_part_copy,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    CopySource={"Bucket": store.bucket, "Key": part},
                )
                done.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            store.call(
                key,
                client.complete_multipart_upload,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": done},
            )
        except BaseException:
            store.call(key, client.abort_multipart_upload, Key=key, UploadId=upload)
            raise
