"""JSON-ready views of catalog rows, shared by `hubd ls/show --json` and the HTTP API."""

from __future__ import annotations

from typing import Any

from .models import Provenance, Repo, Revision


def _refs_by_commit(repo: Repo) -> dict[str, list[str]]:
    refs: dict[str, list[str]] = {}
    for ref in sorted(repo.refs, key=lambda r: r.name):
        refs.setdefault(ref.commit, []).append(ref.name)
    return refs


def provenance_hop(hop: Provenance) -> dict[str, Any]:
    return {
        "hop": hop.hop,
        "source": hop.source_url,
        "commit": hop.commit,
        "node": hop.node,
        "fetched_at": hop.fetched_at.isoformat(),
        "client": hop.client,
    }


def repo_summary(repo: Repo) -> dict[str, Any]:
    latest = repo.revisions[-1] if repo.revisions else None
    card = latest.card if latest else None
    return {
        "repo": repo.repo_id,
        "kind": repo.kind,
        "revisions": len(repo.revisions),
        "refs": {ref.name: ref.commit for ref in repo.refs},
        "license": card.license if card else None,
        "base_model": latest.base_model if latest else None,
        "mirrored_at": latest.mirrored_at.isoformat() if latest else None,
    }


def revision_detail(revision: Revision, refs: list[str]) -> dict[str, Any]:
    card = revision.card
    return {
        "commit": revision.commit,
        "refs": refs,
        "state": revision.state,
        "mirrored_at": revision.mirrored_at.isoformat(),
        "source": revision.source_endpoint,
        "is_adapter": revision.is_adapter,
        "base_model": revision.base_model,
        "size": sum(f.size for f in revision.files),
        "files": [
            {"path": f.path, "size": f.size, "sha256": f.sha256, "git_oid": f.git_oid, "lfs": f.lfs}
            for f in revision.files
        ],
        "card": None
        if card is None
        else {
            "license": card.license,
            "license_name": card.license_name,
            "license_link": card.license_link,
            "base_model": card.base_model,
            "base_model_relation": card.base_model_relation,
            "datasets": card.datasets,
            "tags": card.tags,
            "pipeline_tag": card.pipeline_tag,
            "language": card.language,
            "gated": card.gated,
        },
        "provenance": [provenance_hop(p) for p in revision.provenance],
    }


def repo_detail(repo: Repo) -> dict[str, Any]:
    refs = _refs_by_commit(repo)
    return {
        **repo_summary(repo),
        "revisions": [revision_detail(r, refs.get(r.commit, [])) for r in repo.revisions],
    }
