"""hubd.audit over a generated corpus recorded straight into a catalog: classes, lineage,
openness, scans and every report format (CycloneDX checked by cyclonedx-python-lib's validator).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from support.corpus import Case, cases, evil_pickle, repo_files, seed, weights
from support.modelgen import _readme
from test_schemas import validate

from hubd.audit import AuditReport, RevisionAudit, audit
from hubd.audit.bom import cyclonedx, spdx, spdx_problems
from hubd.audit.policy import parse_policy
from hubd.audit.report import html, markdown, notes, table_rows
from hubd.config import Settings, load_settings
from hubd.context import Context
from hubd.errors import NotFound, RevisionNotFound

CASES = cases()


@pytest.fixture(scope="module")
def corpus_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home holding the whole corpus, recorded as `hubd mirror` would; built once."""
    home = tmp_path_factory.mktemp("corpus")
    context = Context.open(Settings(home=home).resolved())
    for case in CASES:
        seed(context, case.repo, case.files)
    context.close()
    return home


@pytest.fixture(scope="module")
def report(corpus_home: Path) -> AuditReport:
    context = Context.open(Settings(home=corpus_home).resolved())
    try:
        return audit(context)
    finally:
        context.close()


@pytest.fixture
def catalog(home: Path, corpus_home: Path) -> Iterator[Context]:
    """A copy of the corpus home, for tests that add to it."""
    shutil.copytree(corpus_home, home, symlinks=True)
    context = Context.open(load_settings())
    yield context
    context.close()


def entry(report: AuditReport, repo: str) -> RevisionAudit:
    return next(r for r in report.revisions if r.row.repo_id == repo)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.repo)
def test_every_case_gets_its_class_and_spdx(report: AuditReport, case: Case) -> None:
    found = entry(report, case.repo).to_json()
    assert (found["class"], found["spdx"]) == (case.license_class, case.spdx), case.what


def test_every_class_is_covered() -> None:
    assert {c.license_class for c in CASES} == {
        "osi-open-source",
        "open-content",
        "open-weight-restricted",
        "non-commercial",
        "unknown",
    }


def test_license_other_with_and_without_license_name(report: AuditReport) -> None:
    bare = entry(report, "acme/other-bare")
    assert "license: other without a recognised license_name" in bare.declared.reason
    named = entry(report, "acme/other-llama31")
    assert named.declared.conflict is None  # license_name and license_link agree
    sources = {d.source: d.license.key if d.license else None for d in named.declared.declarations}
    assert sources == {
        "card.license": None,
        "card.license_name": "llama3.1",
        "card.license_link": "llama3.1",
    }
    eula = entry(report, "acme/other-eula")
    assert "'acme-eula' is not a license hubd recognises" in eula.declared.reason


def test_missing_license_is_unknown(report: AuditReport) -> None:
    missing = entry(report, "acme/no-license")
    assert missing.declared.reason == "no source declares a license"
    assert missing.openness.verdict == "unknown"


def test_gguf_metadata_contradicting_the_card_is_flagged(report: AuditReport) -> None:
    gguf = entry(report, "acme/gguf-says-llama")
    assert gguf.declared.conflict == (
        "sources disagree: card.license says apache-2.0; gguf:model.gguf says llama3.1"
    )
    assert any("sources disagree" in line for line in notes(report))
    assert report.summary()["conflicts"] == 1


def test_license_file_and_card_agree(report: AuditReport) -> None:
    llama = entry(report, "meta/llama3-base")
    assert [d.source for d in llama.declared.declarations] == ["card.license", "file:LICENSE"]
    assert llama.declared.conflict is None
    assert entry(report, "acme/license-file").declared.declarations[0].source == "file:LICENSE"


def test_lora_on_a_llama_base_is_under_the_llama_license(report: AuditReport) -> None:
    lora = entry(report, "acme/lora-on-llama")
    assert lora.kind == "adapter" and lora.declared.license.key == "apache-2.0"
    data = lora.to_json()
    assert data["licenses"] == ["Apache-2.0", "LicenseRef-Llama-3"]
    assert data["lineage"][0] | {"commit": None} == {
        "repo": "meta/llama3-base",
        "relation": "adapter",
        "via": "acme/lora-on-llama",
        "in_catalog": True,
        "commit": None,
        "license": "llama3",
        "spdx": "LicenseRef-Llama-3",
        "class": "open-weight-restricted",
    }
    assert data["class_reason"] == (
        "adapter of meta/llama3-base (llama3): llama3 is the most restrictive and binds it "
        "whatever its own card says (apache-2.0)"
    )


def test_merge_of_two_bases_takes_the_most_restrictive(report: AuditReport) -> None:
    merge = entry(report, "acme/merge").to_json()
    assert merge["licenses"] == ["Apache-2.0", "MIT", "CC-BY-NC-4.0"]
    assert [a["repo"] for a in merge["lineage"]] == ["acme/weights-mit", "acme/nc"]
    assert merge["class_reason"].startswith(
        "merge of acme/weights-mit (mit), acme/nc (cc-by-nc-4.0)"
    )


def test_base_not_in_the_catalog_is_unknown_evidence(report: AuditReport) -> None:
    orphan = entry(report, "acme/orphan-ft").to_json()
    assert orphan["lineage"][0]["in_catalog"] is False
    assert "nobody/not-mirrored, which is not in the catalog" in orphan["class_reason"]


def test_lineage_goes_through_several_hops(catalog: Context) -> None:
    card = {"license": "mit", "base_model": "acme/lora-on-llama", "base_model_relation": "finetune"}
    seed(catalog, "acme/grandchild", repo_files(card))
    child = audit(catalog, "acme/grandchild").revisions[0].to_json()
    assert child["spdx"] == "LicenseRef-Llama-3"
    assert [a["repo"] for a in child["lineage"]] == ["acme/lora-on-llama", "meta/llama3-base"]


def test_lineage_cycles_end(catalog: Context) -> None:
    seed(catalog, "loop/a", repo_files({"license": "mit", "base_model": "loop/b"}))
    seed(catalog, "loop/b", repo_files({"license": "cc-by-nc-4.0", "base_model": "loop/a"}))
    result = {r.row.repo_id: r for r in audit(catalog).revisions}
    assert result["loop/a"].effective.license.key == "cc-by-nc-4.0"
    assert result["loop/b"].effective.license.key == "cc-by-nc-4.0"


def test_open_source_verdict_and_mof_evidence(report: AuditReport) -> None:
    open_model = entry(report, "acme/open-apache").openness
    assert open_model.verdict == "open-source" and open_model.mof_class == "III"
    found = {e.component: e.detail for e in open_model.evidence if e.found}
    assert found["training code"] == "linked: https://github.com/acme/train"
    assert found["research paper"] == "https://arxiv.org/abs/2401.00001"
    assert found["data card"] == "datasets listed: acme/corpus"
    assert "evaluation code" in open_model.missing
    weights_only = entry(report, "acme/weights-mit").openness
    assert weights_only.verdict == "open-weight" and weights_only.mof_class == "none"
    assert "code: training code missing; inference code missing" in weights_only.reasons
    restricted = entry(report, "meta/llama3-base").openness
    assert restricted.missing[0] == (
        "parameters under an open license (they are open-weight-restricted)"
    )


def test_pickle_calling_os_system_is_critical(report: AuditReport) -> None:
    evil = entry(report, "acme/evil-pickle")
    findings = [(f.severity, f.check, f.path) for f in evil.findings]
    assert findings == [
        ("critical", "pickle-import", "pytorch_model.bin"),
        ("high", "pickle-only", "*"),
    ]
    assert re.search(r"imports (os|posix)\.system", evil.findings[0].detail)
    assert not evil.compliant and not report.compliant  # critical: never compliant
    assert report.violations == [evil]


def test_broken_safetensors_and_gguf_headers(catalog: Context) -> None:
    good = weights()
    files = {
        "README.md": _readme({"license": "mit"}, "broken"),
        "model.safetensors": good[:-4],  # tensors no longer cover the data
        "extra.safetensors": struct.pack("<Q", 1 << 40) + b"{}",  # header length beyond the file
        "model.gguf": b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + b"\xff" * 16,
        "training_args.bin": evil_pickle(),  # not weights: scanned, but no pickle-only finding
    }
    seed(catalog, "acme/broken", files)
    found = audit(catalog, "acme/broken").revisions[0].findings
    checks = [(f.path, f.severity, f.check) for f in found]
    assert ("model.safetensors", "high", "safetensors-header") in checks
    assert ("extra.safetensors", "high", "safetensors-header") in checks
    assert ("model.gguf", "high", "gguf-header") in checks
    assert ("training_args.bin", "critical", "pickle-import") in checks
    assert not any(f.check == "pickle-only" for f in found)


def test_blob_missing_from_the_store(catalog: Context) -> None:
    commit = seed(catalog, "acme/gone", repo_files({"license": "mit"}))
    blob = Path(catalog.store.snapshot_dir("acme/gone", commit), "model.safetensors").resolve()
    blob.unlink()
    (finding,) = audit(catalog, "acme/gone").revisions[0].findings
    assert (finding.check, finding.severity) == ("blob-missing", "medium")


def test_one_repo_or_revision(catalog: Context) -> None:
    assert [r.row.repo_id for r in audit(catalog, "acme/lora-on-llama").revisions] == [
        "acme/lora-on-llama"
    ]  # its base is still read for the lineage
    assert audit(catalog, "acme/lora-on-llama").revisions[0].effective.license.key == "llama3"
    assert len(audit(catalog, "acme/nc", "main").revisions) == 1
    with pytest.raises(RevisionNotFound):
        audit(catalog, "acme/nc", "nope")
    with pytest.raises(NotFound):
        audit(catalog, "nobody/nothing")


def test_policy_first_match_wins(catalog: Context) -> None:
    policy = parse_policy(
        {
            "default": "review",
            "rules": [
                {"repo": "acme/nc", "action": "allow", "reason": "research only"},
                {"class": "non-commercial", "action": "deny"},
                {"license": "LicenseRef-Llama-*", "action": "review"},
                {"class": ["osi-open-source", "open-content"], "action": "allow"},
            ],
        },
        "test",
    )
    result = {r.row.repo_id: r.decision for r in audit(catalog, policy=policy).revisions}
    assert result["acme/nc"].to_json() == {
        "action": "allow",
        "rule": 1,
        "condition": 'repo = "acme/nc"',
        "message": 'acme/nc: allowed by policy rule #1 (repo = "acme/nc"): license cc-by-nc-4.0 '
        "(research only)",
    }
    assert result["acme/nd"].message == (
        'acme/nd: denied by policy rule #2 (class = "non-commercial"): license cc-by-nd-4.0'
    )
    assert result["acme/merge"].action == "deny"  # an NC base makes the merge NC
    assert result["acme/lora-on-llama"].message.startswith(
        'acme/lora-on-llama: flagged for review by policy rule #3 (license = "LicenseRef-Llama-*")'
    )
    assert result["acme/cc-by"].action == "allow"
    assert result["acme/no-license"].message.startswith(
        "acme/no-license: flagged for review by the policy default"
    )


def test_settings_policy_is_used(catalog: Context, tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text('[[rules]]\nclass = "unknown"\naction = "deny"\n')
    configured = replace(catalog, settings=catalog.settings.model_copy(update={"policy": path}))
    report = audit(configured)
    assert report.policy == str(path)
    assert {r.row.repo_id for r in report.violations} == {
        "acme/no-license",
        "acme/other-bare",
        "acme/other-eula",
        "acme/orphan-ft",
        "acme/evil-pickle",
    }


def test_json_report_validates(report: AuditReport) -> None:
    data = json.loads(json.dumps(report.to_json()))
    validate("audit-report.schema.json", data)
    assert data["summary"]["by_class"]["unknown"] == 4
    assert all(
        {"repo", "revision", "class", "spdx", "verdict"} <= set(r) for r in data["revisions"]
    )


def test_markdown_and_table(report: AuditReport) -> None:
    text = markdown(report)
    assert text.startswith("# hubd compliance audit")
    assert "| acme/lora-on-llama |" in text and "## meta/llama3-base @ " in text
    assert f"**{len(CASES)} revision(s) audited: 1 violation(s)**" in text
    rows = {row[0]: row for row in table_rows(report)}
    assert rows["acme/evil-pickle"][-1] == "allow (VIOLATION)"
    assert rows["acme/evil-pickle"][7] == "2 (critical)"


def test_html_is_self_contained(catalog: Context) -> None:
    hostile = {"license": "other", "license_name": "<script src='https://evil.example/x.js'>"}
    seed(catalog, "acme/hostile", repo_files(hostile, '<img src="https://evil.example/i.png">'))
    page = html(audit(catalog))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert "&lt;script src=&#x27;https://evil.example/x.js&#x27;&gt;" in page  # shown, escaped
    assert "acme/lora-on-llama" in page and "https://github.com/acme/train" in page  # as text


def test_cyclonedx_ml_bom_validates(report: AuditReport) -> None:
    bom = cyclonedx(report)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(bom))
    assert error is None, getattr(error, "data", error)
    by_name = {f"{c['group']}/{c['name']}": c for c in bom["components"]}
    assert all(c["type"] == "machine-learning-model" for c in by_name.values())
    lora = by_name["acme/lora-on-llama"]
    assert lora["licenses"] == [
        {"license": {"id": "Apache-2.0", "acknowledgement": "declared"}},
        {
            "license": {
                "name": "Meta Llama 3 Community License",
                "acknowledgement": "concluded",
                "licensing": {"altIds": ["LicenseRef-Llama-3"]},
            }
        },
    ]
    assert lora["pedigree"]["ancestors"][0]["name"] == "llama3-base"
    assert lora["hashes"] == [{"alg": "SHA-1", "content": lora["version"]}]
    assert lora["components"][0]["hashes"][0]["alg"] == "SHA-256"
    assert lora["modelCard"]["properties"][0] == {
        "name": "hubd:osaid-verdict",
        "value": "open-weight",
    }
    assert {"ref": lora["bom-ref"], "dependsOn": [by_name["meta/llama3-base"]["bom-ref"]]} in bom[
        "dependencies"
    ]
    assert by_name["acme/open-apache"]["modelCard"]["modelParameters"]["datasets"] == [
        {"type": "dataset", "name": "acme/corpus"}
    ]


def test_spdx_ai_profile(report: AuditReport) -> None:
    doc = spdx(report)
    assert spdx_problems(doc) == []
    graph = doc["@graph"]
    packages = {e["name"]: e for e in graph if e["type"] == "ai_AIPackage"}
    assert len(packages) == len(CASES)
    lora = packages["acme/lora-on-llama"]["spdxId"]
    rels = [e for e in graph if e["type"] == "Relationship" and e["from"] == lora]
    kinds = {r["relationshipType"]: r["to"] for r in rels}
    by_id = {e.get("spdxId"): e for e in graph}
    assert (
        by_id[kinds["hasDeclaredLicense"][0]]["simplelicensing_licenseExpression"] == "Apache-2.0"
    )
    assert (
        by_id[kinds["hasConcludedLicense"][0]]["simplelicensing_licenseExpression"]
        == "Apache-2.0 AND LicenseRef-Llama-3"
    )
    assert kinds["descendantOf"] == [packages["meta/llama3-base"]["spdxId"]]
    orphan = packages["acme/orphan-ft"]["spdxId"]
    (stub,) = [
        by_id[r["to"][0]]
        for r in graph
        if r["type"] == "Relationship"
        and r["from"] == orphan
        and r["relationshipType"] == "descendantOf"
    ]
    assert stub["type"] == "software_Package" and "not in the hubd catalog" in stub["comment"]


def test_spdx_check_names_what_is_missing(report: AuditReport) -> None:
    doc = spdx(report)
    package = next(e for e in doc["@graph"] if e["type"] == "ai_AIPackage")
    del package["suppliedBy"]
    doc["@graph"] = [
        e
        for e in doc["@graph"]
        if not (
            e.get("from") == package["spdxId"] and e["relationshipType"] == "hasConcludedLicense"
        )
    ]
    problems = spdx_problems(doc)
    assert f"{package['spdxId']}: missing suppliedBy" in problems
    assert f"{package['spdxId']}: needs exactly one hasConcludedLicense to a license" in problems
