"""The gate: the policy judged on what a source declares before any byte moves, and on a
commit pushed to this node before it becomes visible.

Lineage comes from the catalog, and for a base it does not hold, from the source's own metadata
of that base (no files are fetched): a LoRA that calls itself apache-2.0 on a Llama base is
judged under the Llama license before its first byte is mirrored.

Nothing is signed before the download, but a mirrored revision is signed with the node key (a
trusted signer) as soon as every byte is verified, so the gate judges it as ``signed``: a
``signed = false`` rule never blocks a mirror; audits apply it to revisions whose signature is
later missing, broken or no longer matches the catalog.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from ..context import Context
from ..errors import HubdError, PolicyViolation
from ..model.card import card_record
from ..refs import RepoRef
from ..sources.base import RemoteRevision
from ..sources.huggingface import HfSource
from .declared import DeclarationReader
from .facts import RevisionRow, head_finder
from .inheritance import Lineage, policy_facts
from .policy import Decision, evaluate, load_policy
from .scan import Scanner


def check_mirror(ctx: Context, source: HfSource, remote: RemoteRevision) -> Decision | None:
    """None without a policy; the decision if allowed or flagged for review (blocking).

    Raises PolicyViolation, naming the rule, when the policy denies the repo.
    """
    if ctx.settings.policy is None:
        return None
    policy = load_policy(ctx.settings.policy)
    in_catalog = head_finder(ctx.catalog, [], complete=False)
    remote_heads: dict[str, RevisionRow | None] = {}

    def find(repo_id: str) -> RevisionRow | None:
        found = in_catalog(repo_id)
        if found is None and repo_id not in remote_heads:
            try:
                remote_heads[repo_id] = _row(source.resolve(RepoRef.parse(repo_id)))
            except HubdError:  # not a repo id, not there, gated: an unknown base
                remote_heads[repo_id] = None
        return found or remote_heads[repo_id]

    lineage = Lineage(find, DeclarationReader(Scanner(ctx.store)))
    facts = policy_facts(remote.repo_id, lineage.effective(_row(remote)))
    decision = evaluate(policy, replace(facts, signed=True))  # the mirror signs it
    if decision.action == "deny":
        raise PolicyViolation(
            decision.message, hint=f"nothing was downloaded; the policy is {policy.source}"
        )
    return decision


def check_upload(ctx: Context, row: RevisionRow) -> Decision | None:
    """The policy on a commit pushed to this node, judged before it becomes visible (blocking).

    ``row`` is the commit as it would be recorded (its card from the README it carries); bases
    come from the catalog only. Raises PolicyViolation naming the rule when the policy denies.
    """
    if ctx.settings.policy is None:
        return None
    policy = load_policy(ctx.settings.policy)
    lineage = Lineage(
        head_finder(ctx.catalog, [], complete=False), DeclarationReader(Scanner(ctx.store))
    )
    facts = policy_facts(row.repo_id, lineage.effective(row))
    decision = evaluate(policy, replace(facts, signed=True))  # the node signs what it records
    if decision.action == "deny":
        raise PolicyViolation(
            decision.message, hint=f"nothing was committed; the policy is {policy.source}"
        )
    return decision


def _row(remote: RemoteRevision) -> RevisionRow:
    """A revision as the source declares it: its card metadata, no file contents yet."""
    card = card_record(None, remote.card_data, remote.gated)
    paths = {f.path for f in remote.files}
    return RevisionRow(
        repo_id=remote.repo_id,
        commit=remote.commit,
        mirrored_at=datetime.now(UTC),
        source=remote.endpoint,
        is_adapter="adapter_config.json" in paths or card.base_model_relation == "adapter",
        base_model=card.base_model[0] if card.base_model else None,
        card=card,
    )
