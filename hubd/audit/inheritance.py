"""Terms that flow down a lineage: adapters, fine-tunes, merges and quantizations of a base are
bound by the base's license too, so each revision is classed by the most restrictive license in
its chain. A LoRA whose card says apache-2.0 on a Llama base is under the Llama license.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .declared import Declared
from .facts import RevisionRow
from .licenses import License, LicenseClass
from .policy import Facts

RELATIONS = ("adapter", "finetune", "merge", "quantized")
UNKNOWN_BASE = License("unknown", "NOASSERTION", LicenseClass.UNKNOWN, "base not in the catalog")


@dataclass(frozen=True)
class Ancestor:
    repo: str
    relation: str  # how ``via`` derives from ``repo``
    via: str
    commit: str | None  # None: not in the catalog, so its terms are unknown
    license: License  # the ancestor's own effective license

    def to_json(self) -> dict[str, Any]:
        return {
            "repo": self.repo,
            "relation": self.relation,
            "via": self.via,
            "in_catalog": self.commit is not None,
            "commit": self.commit,
            "license": self.license.key,
            "spdx": self.license.spdx,
            "class": str(self.license.license_class),
        }


@dataclass(frozen=True)
class Effective:
    license: License  # the most restrictive in the chain: what the revision is reported under
    licenses: tuple[License, ...]  # every license that applies, its own first
    ancestors: tuple[Ancestor, ...]
    reason: str


def relation(row: RevisionRow) -> str:
    """The card's base_model_relation, else what the Hub would infer from the repo."""
    declared = (row.card.base_model_relation or "").lower() if row.card else ""
    if declared in RELATIONS:
        return declared
    if len(row.bases) > 1:
        return "merge"
    if row.is_adapter:
        return "adapter"
    if any(f.path.lower().endswith(".gguf") for f in row.files):
        return "quantized"
    return "finetune"


class Lineage:
    """Effective licenses over the catalog; ``find`` answers which revision stands for a base."""

    def __init__(
        self,
        find: Callable[[str], RevisionRow | None],
        declared: Callable[[RevisionRow], Declared],
    ) -> None:
        self.find = find
        self.declared = declared
        self._done: dict[tuple[str, str], Effective] = {}

    def effective(self, row: RevisionRow, _seen: frozenset[str] = frozenset()) -> Effective:
        key = (row.repo_id, row.commit)
        if key in self._done:
            return self._done[key]
        own = self.declared(row).license
        how = relation(row)
        ancestors: list[Ancestor] = []
        licenses = [own]
        parents: list[Ancestor] = []
        for base in row.bases:
            if base in _seen:
                continue  # a cycle adds no terms
            found = self.find(base)
            if found is None:
                parent = Ancestor(base, how, row.repo_id, None, UNKNOWN_BASE)
                ancestors.append(parent)
                licenses.append(UNKNOWN_BASE)
            else:
                inherited = self.effective(found, _seen | {row.repo_id})
                parent = Ancestor(base, how, row.repo_id, found.commit, inherited.license)
                ancestors += [parent, *inherited.ancestors]
                licenses += inherited.licenses
            parents.append(parent)
        unique: dict[str, License] = {}
        for lic in licenses:
            unique.setdefault(lic.key, lic)
        governing = max(unique.values(), key=lambda lic: lic.license_class.rank)
        reason = _reason(own, governing, parents)
        result = Effective(governing, tuple(unique.values()), tuple(ancestors), reason)
        self._done[key] = result
        return result


def _reason(own: License, governing: License, parents: list[Ancestor]) -> str:
    if not parents:
        return f"its own terms ({own.key}); no base model"
    if governing.license_class.rank <= own.license_class.rank:
        return f"its own terms ({own.key}) are the most restrictive in its lineage"
    source = next(p for p in parents if p.license.license_class == governing.license_class)
    what = "merge" if len(parents) > 1 else source.relation
    if source.commit is None:
        return (
            f"{what} of {source.repo}, which is not in the catalog: its terms are unknown "
            f"(mirror it with `hubd mirror {source.repo}`)"
        )
    others = ", ".join(f"{p.repo} ({p.license.key})" for p in parents)
    return (
        f"{what} of {others}: {governing.key} is the most restrictive and binds it whatever its "
        f"own card says ({own.key})"
    )


def policy_facts(repo: str, effective: Effective) -> Facts:
    """What the policy judges: the effective class and every license in the lineage."""
    governing, own = effective.license, effective.licenses[0]
    summary = f"license {governing.key}"
    if governing.license_class.rank > own.license_class.rank:
        source = next(a for a in effective.ancestors if a.license.key == governing.key)
        summary += f" inherited from {source.repo}" + (
            f" ({source.relation})" if source.via == repo else f" via {source.via}"
        )
    return Facts(repo, governing.license_class, effective.licenses, summary)
