"""From a repo (and optional LoRA repo) to verified, trusted snapshot paths that passed preflight.

The worker process and the OpenAI-compatible server only ever see what ``prepare`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from ..catalog.models import Revision, RevisionState
from ..catalog.revisions import derived_repos, require_revision
from ..context import Context
from ..errors import EntryNotFound, IntegrityError, InvalidReference, UntrustedSigner
from ..model.gguf import check_lora, check_model, inspect
from ..refs import RepoRef
from ..trust.policy import may_use
from .loadcheck import check_blobs, preflighted, remember_preflight
from .selection import GgufChoice, GgufFile, choose


@dataclass(frozen=True)
class Prepared:
    """Verified, preflighted paths for llama.cpp, and where they came from."""

    repo: str
    commit: str
    model: Path
    lora: Path | None
    lora_repo: str | None
    full_hashes: int


def _revision(session: Session, ref: RepoRef) -> Revision:
    revision = require_revision(session, ref.repo_id, ref.revision)
    if revision.state != RevisionState.VERIFIED:
        raise IntegrityError(f"{ref} is in state {revision.state.value!r}, not verified; refusing")
    return revision


def _ggufs(revision: Revision) -> list[GgufFile]:
    return [GgufFile(f.path, f.size, f.sha256) for f in revision.files if f.path.endswith(".gguf")]


def _no_gguf(session: Session, repo_id: str) -> EntryNotFound:
    quantized = derived_repos(session, repo_id, "quantized")
    hint = (
        "GGUF quantizations of it in the catalog: " + ", ".join(quantized)
        if quantized
        else "mirror a GGUF quantization of it (a repo whose card says base_model: " + repo_id + ")"
    )
    return EntryNotFound(
        f"{repo_id} has no GGUF file (safetensors only); llama.cpp needs GGUF", hint=hint
    )


def prepare(
    ctx: Context,
    repo: RepoRef | None,
    *,
    pattern: str | None = None,
    lora: RepoRef | None = None,
) -> Prepared:
    """Resolve, verify (full hash first, cheap stamp after) and preflight what will be loaded."""
    with ctx.catalog() as session:
        adapter: tuple[Revision, GgufChoice] | None = None
        if lora is not None:
            lora_rev = _revision(session, lora)
            files = _ggufs(lora_rev)
            if not files:
                raise EntryNotFound(
                    f"{lora.repo_id} has no GGUF adapter; llama.cpp applies LoRAs in GGUF",
                    hint="convert it with llama.cpp's convert_lora_to_gguf.py and `hubd add` it",
                )
            adapter = (lora_rev, choose(files, None, lora.repo_id))
            if repo is None:
                if not lora_rev.base_model:
                    raise InvalidReference(
                        f"{lora.repo_id} records no base model; name the base repo to run"
                    )
                repo = RepoRef.parse(lora_rev.base_model)
        if repo is None:
            raise InvalidReference("name a repo to run (or --lora with a recorded base)")
        revision = _revision(session, repo)
        files = _ggufs(revision)
        if not files:
            raise _no_gguf(session, repo.repo_id)
        model = choose(files, pattern, repo.repo_id)
        base_dir = ctx.store.snapshot_dir(repo.repo_id, revision.commit)
        label = f"{repo.repo_id}@{revision.commit[:12]}"
        blobs = [(p.sha256, f"{label} {p.path}") for p in model.parts]
        lora_path = lora_repo = None
        used_adapter: list[tuple[str, str]] = []
        if adapter is not None:
            lora_rev, lora_choice = adapter
            lora_repo = lora_rev.repo.repo_id
            used_adapter.append((lora_repo, lora_rev.commit))
            part = lora_choice.parts[0]
            lora_path = ctx.store.snapshot_dir(lora_repo, lora_rev.commit) / part.path
            blobs.append((part.sha256, f"{lora_repo}@{lora_rev.commit[:12]} {part.path}"))
        commit = revision.commit
        elsewhere = [
            (r.repo.repo_id, r.commit, {f.path: (f.sha256, f.size) for f in r.files}, paths)
            for r, paths in [
                (revision, [p.path for p in model.parts]),
                *([(adapter[0], [adapter[1].parts[0].path])] if adapter else []),
            ]
            if not ctx.store.snapshot_dir(r.repo.repo_id, r.commit).exists()
        ]
    if elsewhere and not ctx.store.local_blobs:  # in the bucket: link, the cache fills on use
        for repo_id, revision_commit, files_of, paths in elsewhere:
            ctx.store.link_snapshot(repo_id, revision_commit, [(p, files_of[p][0]) for p in paths])
    elif elsewhere:  # recorded by another node of a shared catalog: fetch what is needed
        from ..cluster.locations import make_local  # the HTTP stack, only when it is needed

        for repo_id, revision_commit, files_of, paths in elsewhere:
            make_local(ctx, repo_id, revision_commit, files_of, paths)
    for repo_id, revision_commit in [(repo.repo_id, commit), *used_adapter]:
        verdict = may_use(ctx, repo_id, revision_commit)
        if not verdict.ok:
            raise UntrustedSigner(
                f"the trust policy refuses {repo_id}@{revision_commit[:12]}: "
                + "; ".join(verdict.reasons),
                hint="`hubd verify --signatures` shows the signatures; `hubd trust ls` the keys",
            )
    full = check_blobs(ctx.store, blobs)
    judged = [sha256 for sha256, _ in blobs]  # verified just now: the verdict is theirs
    if not preflighted(ctx.store, judged):
        infos = [inspect(base_dir / p.path, p.path) for p in model.parts]
        check_model(infos)
        if lora_path is not None:
            check_lora(inspect(lora_path), infos)
        remember_preflight(ctx.store, judged)
    return Prepared(repo.repo_id, commit, base_dir / model.name, lora_path, lora_repo, full)
