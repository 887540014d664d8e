"""Policy files: which models may be mirrored and used, as first-match rules.

The format is schemas/policy.schema.json; deploy/policy.example.toml is a commented example.

::

    default = "allow"              # action when no rule matches: allow | deny | review
    [[rules]]
    class = "non-commercial"       # conditions, all must hold: class, license, org, repo, signed
    action = "deny"                # allow | deny | review
    reason = "no NC terms in products"

``class`` takes license classes; ``license`` (card ids or SPDX ids), ``org`` and ``repo`` take
globs; each may be one value or a list (any may match). ``signed = false`` matches revisions
without a verified signature (one stored signature that verifies with a trusted key over the
catalog's digests; hubd.audit.facts.signature_check), so a rule can require signatures for an org.
The mirror gate judges a revision as signed: the mirror signs it with the node key once every byte
is verified (hubd.audit.gate).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..errors import InvalidPolicy
from .licenses import License, LicenseClass

ACTIONS = ("allow", "deny", "review")
CONDITIONS = ("class", "license", "org", "repo", "signed")
_VERBS = {"allow": "allowed", "deny": "denied", "review": "flagged for review"}


@dataclass(frozen=True)
class Facts:
    """What a policy decides on: known before download (from the card) and after."""

    repo: str
    license_class: LicenseClass
    licenses: tuple[License, ...]  # every license that applies, lineage included
    summary: str  # e.g. "license cc-by-nc-4.0 (non-commercial)", for messages
    signed: bool = False

    @property
    def org(self) -> str:
        return self.repo.split("/", 1)[0]


@dataclass(frozen=True)
class Rule:
    index: int  # 1-based, as people count rules in the file
    action: str
    conditions: tuple[tuple[str, tuple[str, ...] | bool], ...]
    reason: str | None = None

    def describe(self) -> str:
        """The rule's conditions as written, e.g. ``class = "non-commercial"``."""
        parts = []
        for key, value in self.conditions:
            if isinstance(value, bool):
                shown = str(value).lower()
            elif len(value) == 1:
                shown = f'"{value[0]}"'
            else:
                shown = "[" + ", ".join(f'"{v}"' for v in value) + "]"
            parts.append(f"{key} = {shown}")
        return ", ".join(parts) or "any"

    def matches(self, facts: Facts) -> bool:
        for key, value in self.conditions:
            if isinstance(value, bool):
                if facts.signed != value:
                    return False
            elif not _any_match(value, _subjects(key, facts)):
                return False
        return True


@dataclass(frozen=True)
class Policy:
    source: str
    rules: tuple[Rule, ...]
    default: str = "allow"

    @property
    def uses_signed(self) -> bool:
        """Whether a rule has a ``signed`` condition."""
        return any(key == "signed" for rule in self.rules for key, _ in rule.conditions)


@dataclass(frozen=True)
class Decision:
    action: str
    rule: Rule | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "rule": self.rule.index if self.rule else None,
            "condition": self.rule.describe() if self.rule else None,
            "message": self.message,
        }


def evaluate(policy: Policy | None, facts: Facts) -> Decision:
    """The first matching rule's action, else the policy's default; no policy allows."""
    if policy is None:
        return Decision("allow", None, f"{facts.repo}: no policy: {facts.summary}")
    for rule in policy.rules:
        if rule.matches(facts):
            because = f" ({rule.reason})" if rule.reason else ""
            return Decision(
                rule.action,
                rule,
                f"{facts.repo}: {_VERBS[rule.action]} by policy rule #{rule.index} "
                f"({rule.describe()}): {facts.summary}{because}",
            )
    return Decision(
        policy.default,
        None,
        f"{facts.repo}: {_VERBS[policy.default]} by the policy default (no rule matched): "
        f"{facts.summary}",
    )


def decide(policy: Policy | None, facts: Facts, signed: Callable[[], bool]) -> Decision:
    """:func:`evaluate`, calling ``signed`` only when the answer changes the decision.

    ``facts.signed`` is ignored. Checking a signature is the one costly fact (an ECDSA verify
    per revision), so a rule like ``org = "acme", signed = false`` verifies acme's alone.
    """
    if policy is None or not policy.uses_signed:
        return evaluate(policy, facts)
    unsigned = evaluate(policy, replace(facts, signed=False))
    if unsigned == (with_signature := evaluate(policy, replace(facts, signed=True))):
        return unsigned
    return with_signature if signed() else unsigned


def load_policy(path: Path) -> Policy:
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise InvalidPolicy(f"policy file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidPolicy(f"{path}: {exc}") from None
    return parse_policy(data, str(path))


def parse_policy(data: dict[str, Any], source: str) -> Policy:
    """Check a policy document as schemas/policy.schema.json does, naming what is wrong."""
    unknown = set(data) - {"version", "default", "rules"}
    if unknown:
        raise InvalidPolicy(f"{source}: unknown key {sorted(unknown)[0]!r}")
    if data.get("version", 1) != 1:
        raise InvalidPolicy(f"{source}: version must be 1")
    default = data.get("default", "allow")
    if default not in ACTIONS:
        raise InvalidPolicy(f"{source}: default must be one of {', '.join(ACTIONS)}")
    rules = data.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise InvalidPolicy(f"{source}: rules must be an array of tables ([[rules]])")
    return Policy(source, tuple(_rule(r, i, source) for i, r in enumerate(rules, 1)), default)


def _rule(table: dict[str, Any], index: int, source: str) -> Rule:
    where = f"{source}: rule #{index}"
    unknown = set(table) - {*CONDITIONS, "action", "reason"}
    if unknown:
        raise InvalidPolicy(
            f"{where}: unknown key {sorted(unknown)[0]!r}",
            hint=f"conditions are {', '.join(CONDITIONS)}; then action and reason",
        )
    action = table.get("action")
    if action not in ACTIONS:
        raise InvalidPolicy(f"{where}: action must be one of {', '.join(ACTIONS)}")
    conditions: list[tuple[str, tuple[str, ...] | bool]] = []
    for key in CONDITIONS:
        if key not in table:
            continue
        value = table[key]
        if key == "signed":
            if not isinstance(value, bool):
                raise InvalidPolicy(f"{where}: signed must be true or false")
            conditions.append((key, value))
            continue
        values = [value] if isinstance(value, str) else value
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) for v in values)
        ):
            raise InvalidPolicy(f"{where}: {key} must be a string or a list of strings")
        if key == "class":
            bad = [v for v in values if v not in set(LicenseClass)]
            if bad:
                raise InvalidPolicy(
                    f"{where}: unknown class {bad[0]!r}",
                    hint="classes are " + ", ".join(c.value for c in LicenseClass),
                )
        conditions.append((key, tuple(values)))
    reason = table.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidPolicy(f"{where}: reason must be a string")
    return Rule(index, action, tuple(conditions), reason)


def _subjects(key: str, facts: Facts) -> list[str]:
    if key == "class":
        return [str(facts.license_class)]
    if key == "license":
        return [name for lic in facts.licenses for name in (lic.key, lic.spdx.lower())]
    return [facts.org.lower()] if key == "org" else [facts.repo.lower()]


def _any_match(patterns: tuple[str, ...], subjects: list[str]) -> bool:
    return any(fnmatchcase(s, p.lower()) for p in patterns for s in subjects)
