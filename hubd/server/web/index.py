"""The catalog as the web pages browse it: every repo's head revision with its audit answers,
held in memory as arrays so that search, facets with counts and keyset pages stay fast at
100,000 repos.

Facets like the license class, the openness verdict or who signed need a whole-catalog audit
(lineage, scans, signatures), which takes seconds at that size: it runs off the loop when the
catalog changes, and pages read the last index built meanwhile. The audit report itself is kept
for the dashboard and the report downloads.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from ...audit import AuditReport, RevisionAudit, audit
from ...audit.facts import heads
from ...audit.inheritance import relation
from ...catalog.models import Ref, Revision, RevisionState
from ...context import Context
from ...errors import SignatureInvalid
from ...trust.keys import Signer, stored_signatures, trusted_signers
from ...trust.policy import check_bundle

log = logging.getLogger("hubd.server.web")

# (query parameter, label) of each single-valued facet, then the multi-valued ones.
FACETS = {
    "kind": "Kind",
    "class": "License class",
    "spdx": "SPDX license",
    "org": "Organisation",
    "verdict": "Openness",
    "mof": "MOF class",
}
MULTI = {"signer": "Signed by", "format": "Format"}
FORMATS = {".gguf": "GGUF", ".safetensors": "safetensors"}
PICKLES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
SORTS = ("name", "mirrored", "size")
CHECK_EVERY = 1.0  # seconds between two looks at the catalog's generation
UNSIGNED = "unsigned"


def formats(paths: Iterable[str]) -> tuple[str, ...]:
    """The weight formats among a revision's files: GGUF, safetensors, pickle."""
    found = set()
    for path in paths:
        lower = path.lower()
        found |= {name for suffix, name in FORMATS.items() if lower.endswith(suffix)}
        if lower.endswith(PICKLES):
            found.add("pickle")
    return tuple(sorted(found))


@dataclass(frozen=True)
class Signing:
    """What the stored signatures of a revision say under this node's trust store."""

    signers: tuple[str, ...]  # trusted names whose signature holds
    untrusted: int  # bundles by keys outside the trust store
    invalid: tuple[str, ...]  # why each broken bundle fails

    @property
    def state(self) -> str:
        if self.invalid:
            return "invalid"
        if self.signers:
            return "signed"
        return "untrusted" if self.untrusted else UNSIGNED


def signing(
    ctx: Context, trusted: list[Signer], repo_id: str, commit: str, files: dict[str, str]
) -> Signing:
    """Each stored bundle checked as the trust policy checks it (hubd.trust.policy.check_bundle:
    a signature of the whole repo also covers a mirror limited by --include)."""
    signers: set[str] = set()
    untrusted, invalid = 0, []
    for path in stored_signatures(ctx, repo_id, commit):
        label = f"{repo_id}@{commit[:12]}: signature {path.stem[:12]}"
        try:
            signer = check_bundle(path.read_bytes(), files, trusted, label, complete=False)
        except SignatureInvalid as exc:
            invalid.append(exc.message)
            continue
        except OSError as exc:
            invalid.append(f"{label}: unreadable ({exc.strerror})")
            continue
        if signer is None:
            untrusted += 1
        else:
            signers.add(signer.name)
    return Signing(tuple(sorted(signers)), untrusted, tuple(invalid))


@dataclass(frozen=True)
class Entry:
    """One repo as the catalog page lists it: its head revision and that one's audit."""

    repo: str
    commit: str
    kind: str
    license_class: str
    spdx: str
    verdict: str
    mof: str
    mirrored_at: datetime
    size: int
    files: int
    signing: Signing
    formats: tuple[str, ...]
    compliant: bool

    @property
    def org(self) -> str:
        return self.repo.split("/", 1)[0]

    def value(self, facet: str) -> str:
        return {
            "kind": self.kind,
            "class": self.license_class,
            "spdx": self.spdx,
            "org": self.org,
            "verdict": self.verdict,
            "mof": self.mof,
        }[facet]

    def tags(self, facet: str) -> tuple[str, ...]:
        return (self.signing.signers or (UNSIGNED,)) if facet == "signer" else self.formats

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "commit": self.commit,
            "kind": self.kind,
            "class": self.license_class,
            "spdx": self.spdx,
            "verdict": self.verdict,
            "mof": self.mof,
            "mirrored_at": self.mirrored_at.isoformat(),
            "size": self.size,
            "files": self.files,
            "signed_by": list(self.signing.signers),
            "signature": self.signing.state,
            "formats": list(self.formats),
            "compliant": self.compliant,
        }


@dataclass(frozen=True)
class Child:
    """A repo built on another: how, and the license it is reported under."""

    repo: str
    relation: str
    spdx: str
    license_class: str


@dataclass(frozen=True)
class Facet:
    name: str
    label: str
    values: list[tuple[str, int]]  # (value, count among the matches), most first


@dataclass(frozen=True)
class Page:
    entries: list[Entry]
    total: int  # repos matching the query
    facets: list[Facet]
    next: str | None  # the ``after`` of the following page


@dataclass(frozen=True)
class Query:
    """What the catalog page was asked: text, facet values, sort and the page's start."""

    q: str = ""
    filters: dict[str, str] = field(default_factory=dict)
    sort: str = "name"
    after: str | None = None
    limit: int = 50


def _time_key(entry: Entry) -> tuple[float, str]:
    return (-entry.mirrored_at.timestamp(), entry.repo)


def _size_key(entry: Entry) -> tuple[float, str]:
    return (float(-entry.size), entry.repo)


class CatalogIndex:
    """Repos in name order, with one array of value codes per facet and a sort per order."""

    def __init__(
        self,
        generation: tuple[Any, ...],
        report: AuditReport,
        entries: list[Entry],
        signing: dict[tuple[str, str], Signing],
    ) -> None:
        self.generation = generation
        self.report = report
        self.signing = signing
        self.entries = sorted(entries, key=lambda e: e.repo)
        self.names = [e.repo for e in self.entries]
        self.lower = [name.lower() for name in self.names]
        self.by_repo = {e.repo: i for i, e in enumerate(self.entries)}
        self.values: dict[str, list[str]] = {}
        self.codes: dict[str, npt.NDArray[np.int32]] = {}
        for facet in FACETS:
            column = [e.value(facet) for e in self.entries]
            values = sorted(set(column))
            code = {v: i for i, v in enumerate(values)}
            self.values[facet] = values
            self.codes[facet] = np.fromiter((code[v] for v in column), np.int32, len(column))
        self.tags: dict[str, dict[str, npt.NDArray[np.bool_]]] = {}
        for facet in MULTI:
            masks: dict[str, npt.NDArray[np.bool_]] = {}
            for i, entry in enumerate(self.entries):
                for tag in entry.tags(facet):
                    masks.setdefault(tag, np.zeros(len(self.entries), np.bool_))[i] = True
            self.tags[facet] = dict(sorted(masks.items()))
        self.keys: dict[str, list[Any]] = {"name": self.names}
        self.orders: dict[str, npt.NDArray[np.intp]] = {
            "name": np.arange(len(self.entries), dtype=np.intp)
        }
        for sort, key in (("mirrored", _time_key), ("size", _size_key)):
            keyed = sorted((key(e), i) for i, e in enumerate(self.entries))
            self.orders[sort] = np.array([i for _, i in keyed], dtype=np.intp)
            self.keys[sort] = [k for k, _ in keyed]
        self.overview = overview(report, signing)  # the dashboard's, built with the index
        self.children: dict[str, list[Child]] = {}
        for r in report.revisions:
            if self.by_repo.get(r.row.repo_id) is None:
                continue
            if self.entries[self.by_repo[r.row.repo_id]].commit != r.row.commit:
                continue
            lic = r.effective.license
            for base in r.row.bases:
                child = Child(r.row.repo_id, relation(r.row), lic.spdx, str(lic.license_class))
                self.children.setdefault(base, []).append(child)

    def head(self, repo_id: str) -> Entry | None:
        index = self.by_repo.get(repo_id)
        return None if index is None else self.entries[index]

    def _filter(self, facet: str, value: str) -> npt.NDArray[np.bool_]:
        """The repos with ``value`` for ``facet`` (none for a value no repo has)."""
        if facet in MULTI:
            return self.tags[facet].get(value, np.zeros(len(self.entries), np.bool_))
        values = self.values[facet]
        position = bisect.bisect_left(values, value)
        if position == len(values) or values[position] != value:
            return np.zeros(len(self.entries), np.bool_)
        chosen: npt.NDArray[np.bool_] = self.codes[facet] == position
        return chosen

    def page(self, query: Query) -> Page:
        """The repos matching ``query`` after its cursor, and the facet counts: each facet's
        among the repos every other filter keeps, so a chosen value can be swapped for another
        without first clearing it."""
        searched = np.ones(len(self.entries), np.bool_)
        if query.q:
            needle = query.q.lower()
            searched = np.fromiter((needle in n for n in self.lower), np.bool_, len(self.lower))
        masks = {f: self._filter(f, v) for f, v in query.filters.items() if f in FACETS | MULTI}

        def keeping(skip: str | None) -> npt.NDArray[np.bool_]:
            kept = searched.copy()
            for facet, chosen in masks.items():
                if facet != skip:
                    kept &= chosen
            return kept

        mask = keeping(None)
        facets = []
        for facet, label in FACETS.items():
            among = keeping(facet) if facet in masks else mask
            counts = np.bincount(self.codes[facet][among], minlength=len(self.values[facet]))
            ranked = sorted(
                ((v, int(c)) for v, c in zip(self.values[facet], counts, strict=True) if c),
                key=lambda vc: (-vc[1], vc[0]),
            )
            facets.append(Facet(facet, label, ranked))
        for facet, label in MULTI.items():
            among = keeping(facet) if facet in masks else mask
            ranked = sorted(
                ((tag, int(np.count_nonzero(m & among))) for tag, m in self.tags[facet].items()),
                key=lambda vc: (-vc[1], vc[0]),
            )
            facets.append(Facet(facet, label, [(v, c) for v, c in ranked if c]))
        order, keys = self.orders[query.sort], self.keys[query.sort]
        start = 0 if query.after is None else self._position(query.sort, keys, query.after)
        rest = order[start:]
        chosen = rest[mask[rest]][: query.limit + 1]
        entries = [self.entries[i] for i in chosen[: query.limit]]
        following = None
        if len(chosen) > query.limit:
            following = _cursor(query.sort, entries[-1])
        return Page(entries, int(np.count_nonzero(mask)), facets, following)

    def _position(self, sort: str, keys: Sequence[Any], after: str) -> int:
        """Where the page after the cursor starts: keyset, so a repo added meanwhile shifts
        nothing."""
        if sort == "name":
            return bisect.bisect_right(keys, after)
        number, _, repo = after.partition(" ")
        try:
            key = (float(number), repo)
        except ValueError:
            return len(keys)
        return bisect.bisect_right(keys, key)

    def selection(self, repos: Sequence[str]) -> AuditReport:
        """The audit report of the heads of ``repos`` (all revisions of the catalog if none)."""
        if not repos:
            return self.report
        wanted = set(repos)
        return replace(
            self.report,
            revisions=tuple(r for r in self.report.revisions if r.row.repo_id in wanted),
        )


@dataclass(frozen=True)
class Overview:
    """What the audit dashboard shows of a report: counts, refusals and unsigned revisions."""

    summary: dict[str, Any]
    violations: list[RevisionAudit]
    unsigned: list[tuple[RevisionAudit, Signing]]  # no signature by a trusted key


def overview(report: AuditReport, signed: dict[tuple[str, str], Signing]) -> Overview:
    unsigned = []
    for r in report.revisions:
        state = signed.get((r.row.repo_id, r.row.commit))
        if state is not None and state.state != "signed":
            unsigned.append((r, state))
    return Overview(report.summary(), report.violations, unsigned)


def _cursor(sort: str, entry: Entry) -> str:
    if sort == "name":
        return entry.repo
    number = _time_key(entry)[0] if sort == "mirrored" else _size_key(entry)[0]
    return f"{number!r} {entry.repo}"


def generation(ctx: Context) -> tuple[Any, ...]:
    """What changes when the index must be built again: verified revisions and ref moves."""
    with ctx.catalog() as session:
        revisions = session.execute(
            select(func.count(Revision.id), func.max(Revision.id)).where(
                Revision.state == RevisionState.VERIFIED
            )
        ).one()
        refs = session.execute(select(func.count(Ref.id), func.max(Ref.updated_at))).one()
    return (*revisions, *refs)


def build(ctx: Context) -> CatalogIndex:
    """Audit the whole catalog and index each repo's head (blocking: run it in a thread)."""
    stamp = generation(ctx)
    report = audit(ctx)
    trusted = trusted_signers(ctx)
    signed = {
        (r.row.repo_id, r.row.commit): signing(
            ctx, trusted, r.row.repo_id, r.row.commit, {f.path: f.sha256 for f in r.row.files}
        )
        for r in report.revisions
    }
    by_revision = {(r.row.repo_id, r.row.commit): r for r in report.revisions}
    entries = [
        _entry(by_revision[(row.repo_id, row.commit)], signed[(row.repo_id, row.commit)])
        for row in heads([r.row for r in report.revisions]).values()
    ]
    return CatalogIndex(stamp, report, entries, signed)


def _entry(r: RevisionAudit, signed: Signing) -> Entry:
    lic = r.effective.license
    return Entry(
        repo=r.row.repo_id,
        commit=r.row.commit,
        kind=r.kind,
        license_class=str(lic.license_class),
        spdx=lic.spdx,
        verdict=r.openness.verdict,
        mof=r.openness.mof_class,
        mirrored_at=r.row.mirrored_at,
        size=sum(f.size for f in r.row.files),
        files=len(r.row.files),
        signing=signed,
        formats=formats(f.path for f in r.row.files),
        compliant=r.compliant,
    )


class Indexer:
    """The current index: built on first use, rebuilt in the background when the catalog
    changes; a page never waits for a rebuild when an older index can answer. Whether the
    catalog changed is asked at most every CHECK_EVERY seconds (two aggregates that take some
    30 ms at 100,000 revisions)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.current: CatalogIndex | None = None
        self._lock = asyncio.Lock()
        self._rebuild: asyncio.Task[CatalogIndex] | None = None
        self._checked = 0.0  # when the catalog's generation was last read

    async def get(self) -> CatalogIndex:
        current = self.current
        now = time.monotonic()
        if current is not None and now - self._checked < CHECK_EVERY:
            return current
        stamp = await asyncio.to_thread(generation, self.ctx)
        self._checked = now
        if current is not None and current.generation == stamp:
            return current
        if self._rebuild is None or self._rebuild.done():
            self._rebuild = asyncio.create_task(self._build())
        if current is not None:
            return current
        return await asyncio.shield(self._rebuild)

    async def _build(self) -> CatalogIndex:
        """A failed rebuild leaves the previous index in place (and is logged); without one,
        the page that waits for it fails."""
        async with self._lock:
            try:
                index = await asyncio.to_thread(build, self.ctx)
            except Exception:
                if self.current is None:
                    raise
                log.exception("catalog index: rebuild failed; pages keep the previous one")
                return self.current
            self.current = index
            log.info("catalog index: %d repos", len(index.entries))
            return index
