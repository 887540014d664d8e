"""Metadata on demand for the pull-through: upstream answers, reused, and vetted before any byte.

A revision is resolved through the same sources and validation as `hubd mirror`
(``sources.registry`` in the order ``proxy.upstreams`` gives, ``ops.fetch.resolve_first``,
``HfSource.resolve``). A branch or tag is asked upstream at most once per ``proxy.ref_ttl``; a
commit is immutable, so its answer is kept (the newest :data:`KEPT_COMMITS`). Requests for the
same answer at the same time share one upstream call. The first time a commit is served, the
rules apply in this order, each refusal a :class:`PolicyViolation` (403) naming its rule:
``proxy.deny``, ``proxy.allow``, the audit policy (``audit.gate``, as `hubd mirror` applies it)
and the trust policy's required signers. The verdict is kept with the commit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import partial
from typing import Generic, TypeVar

from ..catalog.refusals import record_refusal
from ..context import Context
from ..errors import PolicyViolation, UpstreamError
from ..ops.fetch import resolve_first
from ..refs import RepoRef, is_commit
from ..sources.base import RemoteRevision
from ..sources.huggingface import HfSource
from ..sources.registry import sources
from ..trust.keys import NODE
from ..trust.policy import load_rules, required_signers
from ..trust.shipped import SIGNATURE_FILE

KEPT_COMMITS = 1024
BACKOFF = (0.25, 1.0)  # seconds before asking a failing upstream again
K = TypeVar("K")
V = TypeVar("V")
log = logging.getLogger("hubd.proxy")


@dataclass(frozen=True)
class Resolved:
    """A commit as the first source that knew it declares it, and the sources after it."""

    source: HfSource
    fallbacks: list[HfSource]
    remote: RemoteRevision


class SingleFlight(Generic[K, V]):
    """At most one call per key in progress; later callers await the first one's answer."""

    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}

    async def run(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        task = self._inflight.get(key)
        if task is None:

            async def wrapped() -> V:
                return await call()

            task = asyncio.ensure_future(wrapped())
            self._inflight[key] = task
            task.add_done_callback(partial(self._done, key))
        return await asyncio.shield(task)  # a caller that goes away does not cancel the others

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone


class Resolver:
    """Upstream answers by ref (for ``proxy.ref_ttl``) and by commit, and their verdicts."""

    def __init__(self, ctx: Context, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self.refusals: Counter[str] = Counter()  # by rule: allow, deny, audit, trust
        self._refs: dict[tuple[str, str], tuple[float, str]] = {}  # -> (fresh until, commit)
        self._commits: OrderedDict[tuple[str, str], Resolved] = OrderedDict()
        self._verdicts: dict[tuple[str, str], PolicyViolation | None] = {}
        self._asking: SingleFlight[tuple[str, str], Resolved] = SingleFlight()
        self._judging: SingleFlight[tuple[str, str], PolicyViolation | None] = SingleFlight()

    def cached(self, repo_id: str, name: str) -> Resolved | None:
        """What is known without asking: a commit seen before, a ref within its TTL."""
        if not is_commit(name):
            ref = self._refs.get((repo_id, name))
            if ref is None or ref[0] <= self.clock():
                return None
            name = ref[1]
        found = self._commits.get((repo_id, name))
        if found is not None:
            self._commits.move_to_end((repo_id, name))
        return found

    def fresh_refs(self, repo_id: str) -> list[tuple[str, str]]:
        """(name, commit) of the repo's refs resolved upstream and still within their TTL."""
        now = self.clock()
        return sorted(
            (name, commit)
            for (repo, name), (until, commit) in self._refs.items()
            if repo == repo_id and until > now
        )

    def ref_name(self, repo_id: str, commit: str) -> str | None:
        """A branch or tag that currently (within its TTL) names ``commit``, if any."""
        now = self.clock()
        for (repo, name), (until, target) in self._refs.items():
            if repo == repo_id and target == commit and until > now:
                return name
        return None

    async def resolve(self, repo_id: str, revision: str | None) -> Resolved:
        """``repo_id@revision`` upstream (cached as above); the sources' own errors otherwise."""
        name = revision or "main"
        found = self.cached(repo_id, name)
        if found is not None:
            return found
        return await self._asking.run((repo_id, name), partial(self._ask, repo_id, name))

    async def _ask(self, repo_id: str, name: str) -> Resolved:
        """Resolve upstream; a 429, a 5xx or an unreachable upstream is asked again after each
        of :data:`BACKOFF`, then its error is passed on (a 429 as a 429, as the Hub would)."""
        candidates = await asyncio.to_thread(self._candidates)  # reads the catalog
        ref = RepoRef.parse(f"{repo_id}@{name}")
        for delay in (*BACKOFF, None):
            try:
                source, remote, fallbacks = await resolve_first(candidates, ref)
                break
            except UpstreamError as exc:
                if delay is None:
                    raise
                log.info("%s: %s; asking again in %.2f s", ref, exc.message, delay)
                await asyncio.sleep(delay)
        resolved = Resolved(source, fallbacks, remote)
        self._commits[(repo_id, remote.commit)] = resolved
        while len(self._commits) > KEPT_COMMITS:
            dropped, _ = self._commits.popitem(last=False)
            self._verdicts.pop(dropped, None)
        if not is_commit(name):
            now = self.clock()
            if len(self._refs) >= KEPT_COMMITS:  # forget what expired before adding
                self._refs = {k: v for k, v in self._refs.items() if v[0] > now}
            self._refs[(repo_id, name)] = (now + self.ctx.settings.proxy_ref_ttl, remote.commit)
        return resolved

    def _candidates(self) -> list[HfSource]:
        """The sources of `hubd mirror`, grouped and ordered as ``proxy.upstreams`` says."""
        every = sources(self.ctx)
        groups = {"peers": every[:-1], "hub": every[-1:]}
        return [s for group in self.ctx.settings.proxy_upstreams for s in groups[group]]

    async def vet(self, resolved: Resolved) -> None:
        """Raise the PolicyViolation that keeps this commit out, if one does (judged once)."""
        key = (resolved.remote.repo_id, resolved.remote.commit)
        if key not in self._verdicts:
            self._verdicts[key] = await self._judging.run(key, partial(self._judge, resolved))
        refusal = self._verdicts[key]
        if refusal is not None:
            raise refusal

    async def _judge(self, resolved: Resolved) -> PolicyViolation | None:
        remote = resolved.remote
        where = (remote.repo_id, remote.commit)
        try:
            await asyncio.to_thread(self._globs, remote.repo_id)
        except PolicyViolation as refusal:
            rule = "deny" if "proxy.deny" in refusal.message else "allow"
            return await self.refused(rule, refusal, *where)
        if self.ctx.settings.policy is not None:  # the audit stack only when there is a policy
            from ..audit.gate import check_mirror

            try:
                await asyncio.to_thread(check_mirror, self.ctx, resolved.source, remote)
            except PolicyViolation as refusal:
                return await self.refused("audit", refusal, *where)
        try:
            await self._signers(resolved)
        except PolicyViolation as refusal:
            return await self.refused("trust", refusal, *where)
        return None

    async def refused(
        self, rule: str, refusal: PolicyViolation, repo_id: str, commit: str | None
    ) -> PolicyViolation:
        """Count, log and record a refusal in the catalog (proxy_refusals); return it."""
        self.refusals[rule] += 1
        log.warning("pull-through refused: %s", refusal.message)
        node = self.ctx.settings.node_name
        await asyncio.to_thread(
            record_refusal, self.ctx.catalog, node, repo_id, commit, rule, refusal.message
        )
        return refusal

    def _globs(self, repo_id: str) -> None:
        settings = self.ctx.settings
        denied = next((g for g in settings.proxy_deny if fnmatchcase(repo_id, g)), None)
        if denied is not None:
            raise PolicyViolation(
                f"proxy.deny: {repo_id} matches {denied!r}; the pull-through does not fetch it",
                hint="nothing was downloaded; `hubd mirror` it if it is wanted after all",
            )
        if not any(fnmatchcase(repo_id, g) for g in settings.proxy_allow):
            allowed = ", ".join(repr(g) for g in settings.proxy_allow) or "nothing"
            raise PolicyViolation(
                f"proxy.allow: {repo_id} matches none of {allowed}; the pull-through does not "
                "fetch it",
                hint="nothing was downloaded",
            )

    async def _signers(self, resolved: Resolved) -> None:
        """The trust policy's signers (the node's own key aside: it signs what it records) must
        be vouched for by the source before any byte moves; admission checks the signatures
        themselves when the revision is recorded. A repo shipping its own model.sig is judged
        then, once its files are there to check it against."""
        remote = resolved.remote
        rules = await asyncio.to_thread(load_rules, self.ctx)
        needed = [n for n in required_signers(rules, remote.repo_id) if n != NODE]
        if not needed or any(f.path == SIGNATURE_FILE for f in remote.files):
            return
        async with resolved.source.session() as session:
            carried = await resolved.source.attestations(session, remote.repo_id, remote.commit)
        if carried is None or not carried.signatures:
            raise PolicyViolation(
                f"trust policy: {remote.repo_id} needs a signature by {', '.join(needed)}, and "
                f"{resolved.source.host} carries none",
                hint="nothing was downloaded; sign it where it comes from, or change "
                "trust/policy.toml",
            )
