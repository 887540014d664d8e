"""Policy files: schema and loader agree, errors name the rule, first match wins."""

from __future__ import annotations

import tomllib
from pathlib import Path

import jsonschema
import pytest
from test_schemas import schema

from hubd.audit.licenses import LICENSES, LicenseClass, lookup
from hubd.audit.policy import Facts, evaluate, load_policy, parse_policy
from hubd.config import load_settings
from hubd.errors import InvalidPolicy

EXAMPLE = Path(__file__).parent.parent / "deploy" / "policy.example.toml"


def facts(repo: str, *keys: str, signed: bool = False) -> Facts:
    licenses = tuple(LICENSES[k] for k in keys)
    worst = max((lic.license_class for lic in licenses), key=lambda c: c.rank)
    return Facts(repo, worst, licenses, f"license {keys[-1]}", signed)


def test_example_policy_validates_and_loads() -> None:
    jsonschema.validate(tomllib.loads(EXAMPLE.read_text()), schema("policy.schema.json"))
    policy = load_policy(EXAMPLE)
    assert policy.default == "review" and len(policy.rules) == 5
    assert evaluate(policy, facts("acme-internal/x", "cc-by-nc-4.0")).action == "allow"
    assert evaluate(policy, facts("other/x", "cc-by-nc-4.0")).action == "deny"
    llama = evaluate(policy, facts("meta-llama/Llama-3.1-8B", "llama3.1"))
    assert llama.action == "review" and llama.rule is not None and llama.rule.index == 3
    assert evaluate(policy, facts("a/b", "apache-2.0")).action == "allow"


def test_first_match_wins_and_conditions_combine() -> None:
    policy = parse_policy(
        {
            "rules": [
                {"org": "meta-*", "signed": False, "action": "deny", "reason": "sign it"},
                {"org": "meta-*", "license": ["LLAMA3*"], "action": "review"},
                {"org": "meta-*", "action": "deny"},
            ]
        },
        "p.toml",
    )
    unsigned = evaluate(policy, facts("meta-llama/x", "llama3"))
    assert unsigned.message == (
        'meta-llama/x: denied by policy rule #1 (org = "meta-*", signed = false): '
        "license llama3 (sign it)"
    )
    assert evaluate(policy, facts("meta-llama/x", "llama3", signed=True)).rule.index == 2  # type: ignore[union-attr]
    assert evaluate(policy, facts("meta-llama/x", "mit", signed=True)).rule.index == 3  # type: ignore[union-attr]
    other = evaluate(policy, facts("acme/x", "mit"))
    assert (other.action, other.rule) == ("allow", None)
    assert other.message == "acme/x: allowed by the policy default (no rule matched): license mit"
    assert evaluate(None, facts("acme/x", "mit")).message == "acme/x: no policy: license mit"


def test_license_globs_match_card_ids_and_spdx_ids_through_the_lineage() -> None:
    policy = parse_policy({"rules": [{"license": "licenseref-llama-3", "action": "deny"}]}, "p")
    assert evaluate(policy, facts("a/lora", "apache-2.0", "llama3")).action == "deny"
    assert evaluate(policy, facts("a/b", "apache-2.0")).action == "allow"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rules]]\nclass = 'non-commercial'\n", r"rules\[0\]\.action: Field required"),
        ("[[rules]]\naction = 'deny'\nclas = 'x'\n", r"rules\[0\]\.clas: Extra inputs"),
        ("[[rules]]\naction = 'deny'\nclass = 'nc'\n", r"rules\[0\]\.class\[0\]: Input should be"),
        (
            "[[rules]]\naction = 'allow'\n[[rules]]\naction = 'deny'\nsigned = 'yes'\n",
            r"rules\[1\]\.signed: Input should be a valid boolean",
        ),
        ("[[rules]]\naction = 'deny'\nrepo = []\n", r"rules\[0\]\.repo: List should have at least"),
        ("[[rules]]\naction = 'deny'\nrepo = 3\n", r"rules\[0\]\.repo: .* a string or a list"),
        ("[[rules]]\naction = 'deny'\nlicense = ['mit', 1]\n", r"rules\[0\]\.license\[1\]"),
        ("[[rules]]\naction = 'deny'\norg = ''\n", r"rules\[0\]\.org\[0\]: String should"),
        ("[[rules]]\naction = 'deny'\nreason = 1\n", r"rules\[0\]\.reason: Input should be"),
        ("default = 'maybe'\n", "default: Input should be 'allow', 'deny' or 'review'"),
        ("rules = 3\n", "rules: Input should be a valid list"),
        ("version = 2\n", "version: Input should be 1"),
        ("version = true\n", "version: Input should be 1"),
        ("colour = 'red'\n", "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_policies_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(InvalidPolicy, match=message) as err:
        load_policy(path)
    assert err.value.exit_code == 2
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(tomllib.loads(text), schema("policy.schema.json"))


def test_unreadable_policy_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidPolicy, match="does not exist"):
        load_policy(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("[[rules\n")
    with pytest.raises(InvalidPolicy, match=r"bad\.toml: Expected"):
        load_policy(tmp_path / "bad.toml")


def test_every_class_is_in_the_schema() -> None:
    classes = schema("policy.schema.json")["$defs"]["LicenseClass"]["enum"]  # type: ignore[index]
    assert classes == [c.value for c in LicenseClass]
    assert lookup("cc-by-nc-4.0") is LICENSES["cc-by-nc-4.0"]


def test_policy_setting_from_file_variable_and_flag(tmp_path: Path) -> None:
    (tmp_path / "hubd.toml").write_text('[audit]\npolicy = "~/policy.toml"\n')
    jsonschema.validate(
        tomllib.loads((tmp_path / "hubd.toml").read_text()), schema("config.schema.json")
    )
    env = {"HUBD_HOME": str(tmp_path)}
    assert load_settings(env).policy == Path("~/policy.toml").expanduser()
    assert load_settings({**env, "HUBD_POLICY": "/etc/p.toml"}).policy == Path("/etc/p.toml")
    assert load_settings(env, policy=Path("/flag.toml")).policy == Path("/flag.toml")
    assert load_settings({"HUBD_HOME": str(tmp_path / "empty")}).policy is None
