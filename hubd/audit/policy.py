"""Policy files: which models may be mirrored and used, as first-match rules.

The format is :class:`PolicyFile` (schemas/policy.schema.json is written from it);
deploy/policy.example.toml is a commented example. What it validates to is evaluated as a
:class:`Policy` of :class:`Rule`.

::

    default = "allow"              # action when no rule matches: allow | deny | review
    [[rules]]
    class = "non-commercial"       # conditions, all must hold: class, license, org, repo, signed
    action = "deny"                # allow | deny | review
    reason = "no NC terms in products"

``class`` takes license classes; ``license`` (card ids or SPDX ids), ``org`` and ``repo`` take
globs; each may be one value or a list (any may match). ``signed = false`` matches revisions
without a verified signature (one stored signature that verifies with a trusted key over the
catalog's digests; hubd.audit.facts.SignatureCheck), so a rule can require signatures for an org.
The mirror gate judges a revision as signed: the mirror signs it with the node key once every byte
is verified (hubd.audit.gate).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from ..errors import InvalidPolicy
from ..validation import Closed, Globs, listed, problem
from .licenses import License, LicenseClass

Action = Literal["allow", "deny", "review"]
CONDITIONS = ("class", "license", "org", "repo", "signed")
_VERBS = {"allow": "allowed", "deny": "denied", "review": "flagged for review"}

Classes = Annotated[
    list[LicenseClass],
    Field(min_length=1),
    BeforeValidator(
        listed,
        json_schema_input_type=LicenseClass | Annotated[list[LicenseClass], Field(min_length=1)],
    ),
]


def _version(value: Any) -> Any:
    """Only the integer 1 (``Literal[1]`` alone would take ``true`` and ``1.0`` for it)."""
    return value if type(value) is int else None


class PolicyRule(Closed):
    """A rule: its conditions, all of which must hold, and what then happens."""

    classes: Classes | None = Field(
        None,
        alias="class",
        description="the revision's effective license class (lineage included)",
    )
    license: Globs | None = Field(
        None,
        description="globs over every license that applies, as Hub card ids (llama3.1) or SPDX "
        "ids (Apache-2.0, LicenseRef-Llama-3.1), case-insensitive",
    )
    org: Globs | None = Field(None, description="globs over the repo's organisation")
    repo: Globs | None = Field(None, description="globs over org/name")
    signed: StrictBool | None = Field(
        None,
        description="whether the revision carries a verified signature (false matches "
        "unsigned ones)",
    )
    action: Action
    reason: StrictStr | None = Field(None, description="shown with the decision")


class PolicyFile(Closed):
    """A TOML policy (shown as JSON) for `hubd audit` and the `hubd mirror` gate (setting
    audit.policy / HUBD_POLICY, or `hubd audit --policy FILE`). Rules are tried in order and the
    first whose conditions all hold decides; `default` decides when none does. A rule without
    conditions matches everything. See deploy/policy.example.toml."""

    model_config = ConfigDict(title="hubd policy file")

    version: Annotated[Literal[1], BeforeValidator(_version)] = 1
    default: Action = Field("allow", description="when no rule matches")
    rules: list[PolicyRule] = Field(default_factory=list)


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
    """A :class:`PolicyRule` as evaluated: its conditions in the order people read them."""

    index: int  # 1-based, as people count rules in the file
    action: Action
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
    default: Action = "allow"

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
    """Validate a policy document (a :class:`PolicyFile`), naming the field that is wrong."""
    try:
        document = PolicyFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        unknown = first["type"] == "extra_forbidden" and first["loc"][0] == "rules"
        hint = f"conditions are {', '.join(CONDITIONS)}; then action and reason"
        raise InvalidPolicy(f"{source}: {problem(exc)}", hint=hint if unknown else None) from None
    rules = tuple(_rule(rule, index) for index, rule in enumerate(document.rules, 1))
    return Policy(source, rules, document.default)


def _rule(rule: PolicyRule, index: int) -> Rule:
    globs = {"class": rule.classes, "license": rule.license, "org": rule.org, "repo": rule.repo}
    conditions: list[tuple[str, tuple[str, ...] | bool]] = [
        (key, tuple(value)) for key, value in globs.items() if value is not None
    ]
    if rule.signed is not None:
        conditions.append(("signed", rule.signed))
    return Rule(index, rule.action, tuple(conditions), rule.reason)


def _subjects(key: str, facts: Facts) -> list[str]:
    if key == "class":
        return [str(facts.license_class)]
    if key == "license":
        return [name for lic in facts.licenses for name in (lic.key, lic.spdx.lower())]
    return [facts.org.lower()] if key == "org" else [facts.repo.lower()]


def _any_match(patterns: tuple[str, ...], subjects: list[str]) -> bool:
    return any(fnmatchcase(s, p.lower()) for p in patterns for s in subjects)
