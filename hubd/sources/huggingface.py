"""Any Hugging Face-compatible endpoint: huggingface.co, a hubd peer, an internal registry.

Metadata comes over huggingface_hub's HTTP session (its auth headers and error mapping are the
Hub's own contract), read raw and bounded, and validated field by field (``modelinfo``). Bytes
come over aiohttp, straight from the socket through the store's hashing writer: small files as
one stream, large files as ordered ranged parts, as many in flight as the link rewards
(``parallelism``).
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

import httpx2
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from .. import __version__
from ..catalog.models import RefKind
from ..errors import (
    AccessDenied,
    EntryNotFound,
    GatedRepo,
    HubdError,
    RepoNotFound,
    RevisionNotFound,
    SizeMismatch,
    UpstreamBusy,
    UpstreamError,
)
from ..lazy import lazy_module
from ..refs import RepoRef, is_commit, is_repo_id
from ..store import BlobWriter
from .base import Attestations, RemoteFile, RemoteRevision
from .modelinfo import (
    INFO_LIMIT,
    DeclaredModelInfo,
    DeclaredTreeEntry,
    declared_files,
    incomplete,
    parse_model_info,
    parse_refs,
    parse_tree_page,
)
from .parallelism import Parallelism

if TYPE_CHECKING:
    import aiohttp
else:
    aiohttp = lazy_module("aiohttp")  # bytes only: a metadata-only run never loads it

STREAM_CHUNK = 1024 * 1024
BUSY = (429, 503)  # a CDN's "slow down": fewer streams, then again after Retry-After
RETRY_AFTER_LIMIT = 30.0  # seconds of a Retry-After honoured at most

HOP_KEYS = ("source", "commit", "node", "fetched_at", "client")
ATTESTATIONS_LIMIT = 64 * 1024 * 1024  # a revision's signatures and statements are kilobytes
# A model info may trickle in no longer than this many read timeouts, however steadily.
METADATA_DEADLINE_FACTOR = 4
# "Did you mean": a search is a courtesy to a failed command, so it is brief and small.
SEARCH_TIMEOUT = 5.0
SEARCH_LIMIT = 1024 * 1024
SUGGESTIONS = 3
REFS_LIMIT = 4 * 1024 * 1024  # a repo's branches and tags (the Hub lists each in ~150 bytes)
log = logging.getLogger("hubd.sources")
# S105: a hint telling the user how to pass a token, not one.
TOKEN_HINT = "pass a token with HF_TOKEN=hf_... (or `hf auth login`) for an account with access"  # noqa: S105


class HfSource:
    """One endpoint speaking the Hugging Face Hub API."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | bool | None,
        timeout: float,
        parts: int,
        part_size: int,
        retries: int,
        min_rate: int,
        grace: float,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # A string is sent; None lets huggingface_hub find the user's token (HF_TOKEN, the
        # `hf auth login` file) only when the Hub is contacted; False never sends one (peers).
        self.token = token
        self.timeout = timeout
        self.parts = parts
        self.part_size = part_size
        self.retries = retries
        self.min_rate = min_rate
        self.grace = grace
        self.parallelism = Parallelism(parts, part_size)  # one transfer's streams, all files

    def has_token(self) -> bool:
        if self.token is None:
            from huggingface_hub import get_token

            return get_token() is not None
        return bool(self.token)

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc

    def headers(self) -> dict[str, str]:
        return build_hf_headers(token=self.token, library_name="hubd", library_version=__version__)

    def resolve(self, ref: RepoRef) -> RemoteRevision:
        """Commit and declared files of ``ref``, every field checked (blocking: run in a thread).

        The body is read raw, bounded in size and time, and validated by
        :func:`parse_model_info`: huggingface_hub's own parser trusts the shape it is given.
        A model info that lists files without size or digest is completed from the tree.
        """
        revision = quote(ref.revision or "main", safe="")
        url = f"{self.endpoint}/api/models/{ref.repo_id}/revision/{revision}"
        try:
            data, _ = self._get_bounded(url, {"blobs": "true"})
        except GatedRepoError:
            raise GatedRepo(f"{ref.repo_id} is gated on {self.host}", hint=TOKEN_HINT) from None
        except RepositoryNotFoundError:
            raise RepoNotFound(
                f"repository {ref.repo_id} not found on {self.host}",
                hint=None if self.has_token() else f"if it is private, {TOKEN_HINT}",
            ) from None
        except RevisionNotFoundError:
            raise RevisionNotFound(
                f"revision {ref.revision!r} not found in {ref.repo_id} on {self.host}"
            ) from None
        except HfHubHTTPError as exc:
            status, said = exc.response.status_code, exc.response.headers
            bad_token = said.get("X-Error-Message") == "Invalid credentials in Authorization header"
            if status == 401 and not said.get("X-Error-Code") and not bad_token:
                # The Hub's answer for a repo that does not exist (or is private) without a
                # token; huggingface_hub maps it to RepoNotFound only for https endpoints.
                raise RepoNotFound(
                    f"repository {ref.repo_id} not found on {self.host}",
                    hint=f"if it is private, {TOKEN_HINT}",
                ) from None
            raise self._http_error(status, ref.repo_id) from None
        except (httpx2.HTTPError, OSError) as exc:
            raise UpstreamError(f"cannot reach {self.endpoint}: {exc}") from None
        info = parse_model_info(data, self.host, ref.repo_id)
        files = self._files(ref.repo_id, info)
        gated = info.gated if isinstance(info.gated, str) else None
        if gated and not self.has_token():
            raise GatedRepo(f"{ref.repo_id} is gated ({gated}) on {self.host}", hint=TOKEN_HINT)
        return RemoteRevision(
            repo_id=ref.repo_id,
            commit=info.sha,
            endpoint=self.endpoint,
            files=files,
            gated=gated,
            card_data=info.cardData,
            ref_kind=self._ref_kind(ref.repo_id, ref.revision or "main", info.sha),
        )

    def _ref_kind(self, repo_id: str, name: str, commit: str) -> RefKind | None:
        """Whether ``name`` is a branch or a tag, as the refs API lists it at ``commit``.

        ``main`` is the Hub's default branch and is not asked about; a commit is no ref. None
        where the source has no refs API (Olah), answers otherwise than it resolved, or fails:
        the kind is a listing detail, never a reason to fail a mirror.
        """
        if name == "main":
            return RefKind.BRANCH
        if is_commit(name):
            return None
        url = f"{self.endpoint}/api/models/{repo_id}/refs"
        try:
            data, _ = self._get_bounded(url, None, limit=REFS_LIMIT, timeout=SEARCH_TIMEOUT)
            refs = parse_refs(data, self.host, repo_id)
        except (HubdError, HfHubHTTPError, httpx2.HTTPError, OSError) as exc:
            log.info("%s: no ref kind for %s@%s: %s", self.host, repo_id, name, exc)
            return None
        for kind, listed in ((RefKind.BRANCH, refs.branches), (RefKind.TAG, refs.tags)):
            if any(r.name == name and r.targetCommit == commit for r in listed):
                return kind
        return None

    def _files(self, repo_id: str, info: DeclaredModelInfo) -> tuple[RemoteFile, ...]:
        """The declared files; a model info that leaves some incomplete is completed by the tree.

        Should the tree fail too, the model info's own complaint is the error, with the tree's.
        """
        if not incomplete(info):
            return declared_files(info, self.host)
        try:
            tree = self._tree(repo_id, info.sha)
        except UpstreamError as exc:
            try:
                declared_files(info, self.host)
            except UpstreamError as own:
                raise UpstreamError(f"{own.message}; nor does its tree: {exc.message}") from None
            raise
        return declared_files(info, self.host, tree)

    def _tree(self, repo_id: str, commit: str) -> list[DeclaredTreeEntry]:
        """The recursive tree of ``commit``, every page, bounded together like one model info.

        Redirects are followed (the session does); a next page elsewhere than this endpoint is
        refused, since the token would go with it.
        """
        url: str | None = f"{self.endpoint}/api/models/{repo_id}/tree/{commit}"
        params: dict[str, str] | None = {"recursive": "true"}
        deadline = time.monotonic() + METADATA_DEADLINE_FACTOR * self.timeout
        budget = INFO_LIMIT
        seen: set[str] = set()
        entries: list[DeclaredTreeEntry] = []
        while url is not None:
            seen.add(url)
            try:
                data, url = self._get_bounded(url, params, deadline=deadline, limit=budget)
            except HfHubHTTPError as exc:
                raise UpstreamError(
                    f"{self.host} answered the tree of {repo_id} with HTTP "
                    f"{exc.response.status_code}"
                ) from None
            except (httpx2.HTTPError, OSError) as exc:
                raise UpstreamError(f"cannot reach {self.endpoint}: {exc}") from None
            params, budget = None, budget - len(data)
            entries += parse_tree_page(data, self.host, repo_id)
            if url is not None and (url in seen or _origin(url) != _origin(self.endpoint)):
                raise UpstreamError(
                    f"{self.host} links the next page of {repo_id}'s tree to {url[:200]!r}: "
                    "not a new page on this endpoint"
                )
        return entries

    def similar(self, repo_id: str) -> list[str]:
        """Up to SUGGESTIONS repo ids on this endpoint close to ``repo_id``; [] on any failure."""
        url = f"{self.endpoint}/api/models"
        params = {"search": repo_id.partition("/")[2], "limit": "20"}
        try:
            data, _ = self._get_bounded(url, params, limit=SEARCH_LIMIT, timeout=SEARCH_TIMEOUT)
            hits = json.loads(data)[:20]
            # Shown in a terminal: only what is a repo id (no escapes, no control characters).
            ids = [h["id"] for h in hits if isinstance(h["id"], str) and is_repo_id(h["id"])]
        except Exception:  # a suggestion that cannot be had is not an error
            return []
        by_lower = {i.lower(): i for i in ids if i != repo_id}
        close = difflib.get_close_matches(repo_id.lower(), by_lower, n=SUGGESTIONS, cutoff=0.6)
        return [by_lower[c] for c in close]

    def _get_bounded(
        self,
        url: str,
        params: dict[str, str] | None,
        *,
        deadline: float | None = None,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> tuple[bytes, str | None]:
        """A metadata body of at most ``limit`` (INFO_LIMIT) bytes, within a deadline however it
        trickles; and the absolute URL of its ``Link: rel="next"`` page, if any."""
        timeout = timeout or self.timeout
        limit = INFO_LIMIT if limit is None else limit
        total = METADATA_DEADLINE_FACTOR * timeout
        deadline = deadline or time.monotonic() + total
        chunks: list[bytes] = []
        received = 0
        with get_session().stream(
            "GET", url, headers=self.headers(), params=params, timeout=timeout
        ) as resp:
            hf_raise_for_status(resp)
            for chunk in resp.iter_bytes():
                received += len(chunk)
                chunks.append(chunk)
                if received > limit:
                    raise UpstreamError(f"{self.host} sent more than {limit} bytes for {url}")
                if time.monotonic() > deadline:
                    raise UpstreamError(
                        f"{self.host} took longer than {total:.0f} s to send {url} "
                        f"({received} bytes so far)"
                    )
            link = resp.links.get("next", {}).get("url")
            following = urljoin(str(resp.url), link) if link else None
        return b"".join(chunks), following

    async def attestations(
        self, session: aiohttp.ClientSession, repo_id: str, commit: str, local: bool = False
    ) -> Attestations | None:
        """What a hubd peer vouches for this commit with; None from a plain Hub (no such API).

        A peer that has the API but answers with something malformed is an UpstreamError: its
        signatures must be checked, so they cannot be silently dropped. ``local``: only what
        the peer's own store holds (a node of the same catalog asks so).
        """
        url = f"{self.endpoint}/api/hubd/models/{repo_id}/revision/{commit}/attestations"
        if local:
            url += "?local=1"
        try:
            async with session.get(url, headers=self.headers()) as resp:
                if resp.status != 200:
                    return None
                data = await resp.content.read(ATTESTATIONS_LIMIT + 1)
        except (aiohttp.ClientError, TimeoutError):
            return None
        if len(data) > ATTESTATIONS_LIMIT:
            raise UpstreamError(
                f"{repo_id}@{commit[:12]}: {self.host} sent more than "
                f"{ATTESTATIONS_LIMIT} bytes of attestations"
            )
        try:
            body = json.loads(data)
            if body["commit"] != commit:
                raise ValueError(commit)
            hops = [
                {k: str(h[k]) for k in HOP_KEYS}
                for h in body["provenance"]
                if h["commit"] == commit
            ]
            for hop in hops:  # recorded as times in the catalog: a bad one is malformed here
                datetime.fromisoformat(hop["fetched_at"])
            signatures = {
                str(name): json.dumps(bundle).encode()
                for name, bundle in body["signatures"].items()
            }
            statements = [dict(e) for e in body["statements"]]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UpstreamError(
                f"{repo_id}@{commit[:12]}: {self.host} answered with malformed attestations"
            ) from None
        return Attestations(self.endpoint, hops, signatures, statements)

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        return f"{self.endpoint}/{repo_id}/resolve/{commit}/{quote(path)}"

    def _http_error(self, status: int, what: str, code: str | None = None) -> HubdError:
        if code == "GatedRepo":
            return GatedRepo(f"{what} is gated on {self.host}", hint=TOKEN_HINT)
        if code == "RepoNotFound" and status != 401:  # a 401 hides what needs a token
            return RepoNotFound(f"{what}: repository not found on {self.host}")
        if code == "RevisionNotFound":
            return RevisionNotFound(f"{what}: revision not found on {self.host}")
        if code == "EntryNotFound" or status == 404:
            return EntryNotFound(f"{what}: not found on {self.host}")
        if status in (401, 403):
            return AccessDenied(f"{what}: access denied by {self.host}", hint=TOKEN_HINT)
        if status == 429:
            return UpstreamBusy(f"{what}: {self.host} is rate-limiting (HTTP 429)")
        return UpstreamError(f"{what}: HTTP {status} from {self.host}")

    def session(self) -> aiohttp.ClientSession:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=self.timeout
        )
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        # identity on every request, the CDN's too (as huggingface_hub): the bytes are stored and
        # verified as sent, so a gzipped answer to aiohttp's default `gzip, deflate` would fail.
        return aiohttp.ClientSession(
            timeout=timeout,
            connector=connector,
            auto_decompress=False,
            trust_env=True,
            headers={"Accept-Encoding": "identity"},
        )

    async def download(
        self,
        session: aiohttp.ClientSession,
        remote: RemoteFile,
        url: str,
        writer: BlobWriter,
        advance: Callable[[int], None],
    ) -> None:
        """Fill ``writer`` from ``writer.offset`` to the declared size, retrying dropped links.

        Bounded however the upstream trickles: an attempt that falls behind ``min_rate`` is
        dropped; one that keeps less than ``grace`` seconds' worth at ``min_rate`` counts against
        the retries (a byte per attempt must not reset them); and the file has a deadline, its
        remaining bytes at ``min_rate`` plus one grace per attempt.
        """
        budget = (remote.size - writer.offset) / self.min_rate + (self.retries + 1) * self.grace
        deadline = time.monotonic() + budget
        failures = 0
        while writer.offset < remote.size:
            before = writer.offset
            pace = _Pace(self.min_rate, self.grace, deadline)
            try:
                if remote.size - writer.offset > self.part_size and self.parts > 1:
                    location = await self._locate(session, url, remote)
                    await self._ranged(session, location, writer, advance, pace)
                else:
                    await self._stream(session, url, writer, advance, remote, pace)
            except (aiohttp.ClientError, TimeoutError, _Busy) as exc:
                kept = writer.offset - before
                failures = 0 if kept >= self.min_rate * self.grace else failures + 1
                overdue = time.monotonic() >= deadline
                if failures > self.retries or overdue:
                    if overdue:
                        reason = f"not done within its deadline of {budget:.0f} s"
                    elif isinstance(exc, _Slow | _Busy):
                        reason = str(exc)
                    elif isinstance(exc, TimeoutError):
                        reason = "stalled"
                    else:
                        reason = str(exc) or "dropped"
                    raise UpstreamError(
                        f"{remote.path}: transfer from {self.host} failed ({reason}) after "
                        f"{writer.offset} of {remote.size} bytes",
                        hint="re-run to resume from the bytes already on disk",
                    ) from None
                backoff = min(0.1 * 2**failures, 2.0)
                if isinstance(exc, _Busy):
                    backoff = max(backoff, exc.retry_after)
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))

    async def _locate(self, session: aiohttp.ClientSession, url: str, remote: RemoteFile) -> str:
        """Follow the Hub's redirect once (LFS files live on a CDN) and check the declared size."""
        async with session.head(url, headers=self.headers(), allow_redirects=False) as resp:
            if resp.status >= 400:
                raise self._http_error(resp.status, remote.path, resp.headers.get("X-Error-Code"))
            redirect = resp.status in (301, 302, 303, 307, 308)
            # A redirect's own Content-Length is its body ("Found. Redirecting…"), not the file.
            size = resp.headers.get("X-Linked-Size") or (
                None if redirect else resp.headers.get("Content-Length")
            )
            if size is not None and size.isdigit() and int(size) != remote.size:
                raise SizeMismatch(
                    f"{remote.path}: {self.host} now says {size} bytes, declared {remote.size}"
                )
            location = resp.headers.get("Location")
            return urljoin(url, location) if redirect and location else url

    async def _stream(
        self,
        session: aiohttp.ClientSession,
        url: str,
        writer: BlobWriter,
        advance: Callable[[int], None],
        remote: RemoteFile,
        pace: _Pace,
    ) -> None:
        start = writer.offset
        headers = self.headers()
        if start:
            headers["Range"] = f"bytes={start}-"
        # The GET holds a place in the transfer's window, as a part does.
        held = self.parallelism.holding(STREAM_CHUNK)
        async with held, session.get(url, headers=headers) as resp:
            self._check_busy(resp)
            if resp.status >= 400:
                raise self._http_error(resp.status, remote.path, resp.headers.get("X-Error-Code"))
            if start and resp.status != 206:
                await asyncio.to_thread(writer.restart)
                advance(-start)
                start = 0
            self._check_length(resp, start, remote)
            pending: asyncio.Future[None] | None = None
            buffer = bytearray()
            try:
                async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
                    buffer += chunk
                    pace.feed(len(chunk))
                    self.parallelism.feed(len(chunk))
                    if len(buffer) >= STREAM_CHUNK:
                        if pending is not None:
                            await pending
                        data, buffer = bytes(buffer), bytearray()
                        pending = asyncio.ensure_future(asyncio.to_thread(writer.write, data))
                        advance(len(data))
            finally:
                # Keep what arrived before a drop or interrupt: the next attempt resumes after it.
                if pending is not None:
                    await pending
                if buffer:
                    await asyncio.to_thread(writer.write, bytes(buffer))
                    advance(len(buffer))
        if writer.offset < remote.size:
            raise aiohttp.ClientPayloadError("connection closed early")

    def _check_length(self, resp: aiohttp.ClientResponse, start: int, remote: RemoteFile) -> None:
        """A body that cannot end at the declared size is refused before a byte is stored."""
        total = resp.content_length
        content_range = resp.headers.get("Content-Range", "")
        if content_range.rpartition("/")[2].isdigit():
            total = int(content_range.rpartition("/")[2])
        elif total is not None:
            total += start
        if total is not None and total != remote.size:
            raise SizeMismatch(
                f"{remote.path}: {self.host} sends {total} bytes, it declared {remote.size}"
            )

    async def _part(
        self, session: aiohttp.ClientSession, url: str, lo: int, hi: int, pace: _Pace
    ) -> bytes:
        # The token goes to this endpoint (a peer serves its own bytes), never to the CDN the
        # Hub redirects LFS files to: the signed URL is the credential there.
        own = urlsplit(url).netloc == urlsplit(self.endpoint).netloc
        headers = {**(self.headers() if own else {}), "Range": f"bytes={lo}-{hi - 1}"}
        async with session.get(url, headers=headers) as resp:
            self._check_busy(resp)
            if resp.status != 206:
                raise UpstreamError(f"{self.host} does not serve byte ranges (HTTP {resp.status})")
            chunks: list[bytes] = []
            received = 0
            async for chunk in resp.content.iter_any():  # paced as it arrives, not per part
                chunks.append(chunk)
                received += len(chunk)
                pace.feed(len(chunk))
                self.parallelism.feed(len(chunk))
                if received > hi - lo:
                    break
        if received != hi - lo:
            raise aiohttp.ClientPayloadError(f"range of {received} bytes, asked {hi - lo}")
        return b"".join(chunks)  # one copy, as resp.read() made

    def _check_busy(self, resp: aiohttp.ClientResponse) -> None:
        """A 429 or 503 narrows the transfer's window and is retried after its Retry-After."""
        # A peer's 503 with an error code (BlobUnavailable) is an answer, not a "slow down".
        if resp.status in BUSY and "X-Error-Code" not in resp.headers:
            self.parallelism.busy()
            after = resp.headers.get("Retry-After", "")
            wait = min(float(after), RETRY_AFTER_LIMIT) if after.isdigit() else 0.0
            raise _Busy(f"{self.host} is busy (HTTP {resp.status})", wait)

    async def _ranged(
        self,
        session: aiohttp.ClientSession,
        url: str,
        writer: BlobWriter,
        advance: Callable[[int], None],
        pace: _Pace,
    ) -> None:
        """Parts in flight ahead of the hash, written strictly in order (one pass, resumable).

        A producer asks for parts as the transfer's window admits them, each as large as the
        window's share of the budget; this loop writes them in order. A part holds its place
        until written, and a file's first unwritten part is always asked for, so every place
        taken frees itself and files never deadlock on each other.
        """
        size = writer.expected.size
        window = self.parallelism
        asked: asyncio.Queue[tuple[asyncio.Task[bytes], int] | None] = asyncio.Queue()
        pending = 0  # parts of this file asked for and not yet written

        async def produce() -> None:
            nonlocal pending
            lo = writer.offset
            while lo < size:
                hi = min(lo + window.part_bytes(), size)
                await window.acquire(hi - lo)
                if not pending:  # waiting on other files' parts is no stall of this one
                    pace.restart()
                pending += 1
                part = asyncio.create_task(self._part(session, url, lo, hi, pace))
                asked.put_nowait((part, hi - lo))
                lo = hi
            asked.put_nowait(None)

        producer = asyncio.create_task(produce())
        try:
            while (item := await asked.get()) is not None:
                part, nbytes = item
                try:
                    data = await part
                    await asyncio.to_thread(writer.write, data)
                finally:
                    window.release(nbytes)
                    pending -= 1
                advance(len(data))
            await producer
        finally:
            producer.cancel()
            while not asked.empty():
                if (item := asked.get_nowait()) is not None:
                    part, nbytes = item
                    if not part.cancel() and not part.cancelled():
                        part.exception()  # a sibling's 429 too: retrieved, so never logged as lost
                    window.release(nbytes)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


class _Slow(TimeoutError):
    """An attempt fell behind the minimum rate: a stall like a read timeout, and retried as one."""


class _Busy(Exception):
    """The upstream answered 429 or 503: retried as a dropped link, after ``retry_after``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Pace:
    """One attempt's clock: bytes must arrive at ``min_rate`` on average, ``grace`` s of slack.

    A read timeout sees a byte a second as progress; this does not. Credit for bytes ahead of
    the rate is capped at ``grace``, so a fast start cannot pay for a trickle later, and no
    credit reaches past the file's deadline.
    """

    def __init__(self, min_rate: int, grace: float, deadline: float) -> None:
        self.min_rate = min_rate
        self.grace = grace
        self.deadline = deadline
        self.due = min(time.monotonic() + grace, deadline)

    def restart(self) -> None:
        """Nothing in flight was due until now: give the next bytes a fresh grace."""
        self.due = max(self.due, min(time.monotonic() + self.grace, self.deadline))

    def feed(self, received: int) -> None:
        """Count bytes just received; raise :class:`_Slow` once the attempt is behind."""
        now = time.monotonic()
        self.due = min(self.due + received / self.min_rate, now + self.grace, self.deadline)
        if now > self.due:
            raise _Slow(f"slower than {self.min_rate} bytes/s")
