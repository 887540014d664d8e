"""From a repo (and optional LoRA repo) to verified, trusted snapshot paths that passed preflight.

The worker process and the OpenAI-compatible server only ever see what ``prepare`` returns.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ..catalog.models import Revision, RevisionState
from ..catalog.revisions import derived_repos, require_revision
from ..context import Context
from ..errors import EntryNotFound, IntegrityError, InvalidReference, UntrustedSigner
from ..model.gguf import check_lora, check_model, inspect
from ..refs import RepoRef, is_commit
from ..trust.keys import trust_dir
from ..trust.policy import load_rules, may_use, required_signers
from .loadcheck import check_blobs, preflighted, remember_preflight
from .ready import Basis, Prepared, remember, request_key
from .selection import GgufChoice, GgufFile, choose


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
    """Resolve, verify (full hash first, cheap stamp after) and preflight what will be loaded.

    The answer is kept (hubd.runtime.ready) for the next run of the same request.
    """
    asked = str(repo) if repo else None
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
    prepared = Prepared(repo.repo_id, commit, base_dir / model.name, lora_path, lora_repo, full)
    links = [(str(base_dir / p.path), p.sha256) for p in model.parts]
    if adapter is not None and lora_path is not None:
        links.append((str(lora_path), adapter[1].parts[0].sha256))
    named = [(repo, commit)] + ([(lora, adapter[0].commit)] if lora and adapter else [])
    _keep(ctx, request_key(asked, pattern, str(lora) if lora else None), prepared, named, links)
    return prepared


def _keep(
    ctx: Context,
    key: str,
    prepared: Prepared,
    used: list[tuple[RepoRef, str]],
    links: list[tuple[str, str]],
) -> None:
    """Keep the answer for the next run (hubd.runtime.ready), when it may be kept at all."""
    rules = load_rules(ctx)
    if not ctx.store.local_blobs or any(required_signers(rules, r.repo_id) for r, _ in used):
        return
    refs = []
    for ref, commit in used:
        if ref.revision and is_commit(ref.revision):
            continue
        name = ref.revision or "main"
        if ctx.store.get_ref(ref.repo_id, name) != commit:  # the store lags the catalog
            return
        refs.append((ref.repo_id, name, commit))
    watched = [trust_dir(ctx), ctx.settings.home / "keys"]
    watched += [ctx.store.signature_dir(r.repo_id, commit) for r, commit in used]
    remember(ctx.store, key, prepared, Basis(refs, links, [str(w) for w in watched]))
