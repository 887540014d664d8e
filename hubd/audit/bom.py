"""AI bills of materials: CycloneDX 1.6 ML-BOM and SPDX 3.0.1 JSON-LD with the AI profile.

Written as plain JSON: cyclonedx-python-lib has no modelCard model and no SPDX 3 library is
needed for this much. The tests validate the CycloneDX output with cyclonedx-python-lib's strict
JSON schema validator; the SPDX AI profile's required fields are checked here on every write.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any
from urllib.parse import quote

from .inheritance import Ancestor
from .licenses import License
from .results import AuditReport, RevisionAudit

SPDX_CONTEXT = "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"
NO_ASSERTION = "expandedlicensing_NoAssertionLicense"
AI_REQUIRED = (
    "name",
    "software_packageVersion",
    "software_downloadLocation",
    "software_primaryPurpose",
    "suppliedBy",
    "releaseTime",
)


def _is_listed(lic: License) -> bool:
    """Whether the id is on the SPDX license list (LicenseRef-… and NOASSERTION are not)."""
    return not lic.spdx.startswith("LicenseRef-") and lic.spdx != "NOASSERTION"


def _purl(repo: str, commit: str | None) -> str:
    return f"pkg:huggingface/{repo}" + (f"@{commit}" if commit else "")


# ----------------------------------------------------------------------------- CycloneDX 1.6


def _cdx_license(lic: License, acknowledgement: str) -> dict[str, Any]:
    if _is_listed(lic):
        return {"license": {"id": lic.spdx, "acknowledgement": acknowledgement}}
    body = {
        "name": lic.name,
        "acknowledgement": acknowledgement,
        "licensing": {"altIds": [lic.spdx]},
    }
    return {"license": body}


def _cdx_licenses(own: License, applicable: tuple[License, ...]) -> list[dict[str, Any]]:
    """The revision's own license as declared, inherited ones as concluded; unknowns left out."""
    result = []
    for lic in applicable:
        if lic.spdx != "NOASSERTION":
            result.append(_cdx_license(lic, "declared" if lic.key == own.key else "concluded"))
    return result


def _cdx_ancestor(a: Ancestor) -> dict[str, Any]:
    org, _, name = a.repo.rpartition("/")
    component: dict[str, Any] = {"type": "machine-learning-model", "name": name or a.repo}
    if org:
        component["group"] = org
    if a.commit:
        component |= {"version": a.commit, "purl": _purl(a.repo, a.commit)}
        if licenses := _cdx_licenses(a.license, (a.license,)):
            component["licenses"] = licenses
    component["description"] = (
        f"{a.relation} base of {a.via}"
        if a.commit
        else f"{a.relation} base of {a.via}; not in the hubd catalog, its terms are unknown"
    )
    return component


def _cdx_component(r: RevisionAudit) -> dict[str, Any]:
    row, eff, op = r.row, r.effective, r.openness
    org, _, name = row.repo_id.partition("/")
    ref = _purl(row.repo_id, row.commit)
    card = row.card
    parameters: dict[str, Any] = {}
    if card and card.pipeline_tag:
        parameters["task"] = card.pipeline_tag
    if card and card.datasets:
        parameters["datasets"] = [{"type": "dataset", "name": d} for d in card.datasets]
    openness = [
        ("hubd:osaid-verdict", op.verdict),
        *(("hubd:osaid-reason", reason) for reason in op.reasons),
        ("hubd:mof-class", op.mof_class),
        *(("hubd:mof-missing", m) for m in op.missing),
    ]
    compliance = [
        ("hubd:class", str(eff.license.license_class)),
        ("hubd:spdx", eff.license.spdx),
        ("hubd:decision", r.decision.action),
        ("hubd:compliant", str(r.compliant).lower()),
        *((f"hubd:finding:{f.severity}", f"{f.path}: {f.detail}") for f in r.findings),
    ]
    component: dict[str, Any] = {
        "type": "machine-learning-model",
        "bom-ref": ref,
        "group": org,
        "name": name,
        "version": row.commit,
        "purl": ref,
        "hashes": [{"alg": "SHA-1", "content": row.commit}],  # the git commit: the whole tree
        "externalReferences": [{"type": "distribution", "url": f"{row.source}/{row.repo_id}"}],
        "modelCard": {
            "modelParameters": parameters,
            "properties": [{"name": n, "value": v} for n, v in openness],
        },
        "properties": [{"name": n, "value": v} for n, v in compliance],
        "components": [
            {
                "type": "file",
                "bom-ref": f"{ref}#{f.path}",
                "name": f.path,
                "hashes": [{"alg": "SHA-256", "content": f.sha256}],
                "properties": [{"name": "hubd:size", "value": str(f.size)}],
            }
            for f in row.files
        ],
    }
    if licenses := _cdx_licenses(r.declared.license, eff.licenses):
        component["licenses"] = licenses
    link = card.license_link if card else None
    if link and "://" in link:
        component["externalReferences"].append({"type": "license", "url": link})
    if eff.ancestors:
        component["pedigree"] = {
            "ancestors": [_cdx_ancestor(a) for a in eff.ancestors],
            "notes": eff.reason,
        }
    return component


def cyclonedx(report: AuditReport) -> dict[str, Any]:
    """A CycloneDX 1.6 ML-BOM: one machine-learning-model component per audited revision."""
    components = [_cdx_component(r) for r in report.revisions]
    refs = {c["bom-ref"] for c in components}
    dependencies = []
    for r in report.revisions:
        parents = [_purl(a.repo, a.commit) for a in r.effective.ancestors if a.via == r.row.repo_id]
        present = [p for p in dict.fromkeys(parents) if p in refs]
        if present:
            dependencies.append({"ref": _purl(r.row.repo_id, r.row.commit), "dependsOn": present})
    bom: dict[str, Any] = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": _timestamp(report),
            "tools": {
                "components": [{"type": "application", "name": "hubd", "version": report.version}]
            },
            "properties": [
                {"name": "hubd:policy", "value": report.policy or "none"},
                {"name": "hubd:compliant", "value": str(report.compliant).lower()},
            ],
        },
        "components": components,
    }
    if dependencies:
        bom["dependencies"] = dependencies
    return bom


def _timestamp(report: AuditReport) -> str:
    return report.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------- SPDX 3.0.1


class _Graph:
    """Builds an SPDX 3.0.1 @graph with stable local ids under one document namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.elements: list[dict[str, Any]] = []
        self._ids: dict[str, str] = {}
        self._serial = 0

    def id(self, key: str) -> str:
        """Percent-encoded, so distinct keys (``a/b-c``, ``a-b/c``) never share an spdxId."""
        if key not in self._ids:
            self._ids[key] = self.namespace + quote(key, safe="@/")
        return self._ids[key]

    def has(self, key: str) -> bool:
        return key in self._ids

    def add(self, key: str, kind: str, **fields: Any) -> str:
        spdx_id = self.id(key)
        self.elements.append(
            {"type": kind, "spdxId": spdx_id, "creationInfo": "_:creationinfo", **fields}
        )
        return spdx_id

    def relate(self, source: str, kind: str, targets: list[str]) -> None:
        self._serial += 1
        self.add(
            f"relationship-{self._serial}",
            "Relationship",
            **{"from": source, "relationshipType": kind, "to": targets},
        )

    def license(self, expression: str) -> str:
        if expression == "NOASSERTION":
            return NO_ASSERTION
        key = f"license-{expression}"
        if self.has(key):
            return self.id(key)
        return self.add(
            key, "simplelicensing_LicenseExpression", simplelicensing_licenseExpression=expression
        )


def spdx(report: AuditReport) -> dict[str, Any]:
    """An SPDX 3.0.1 document: an ai_AIPackage per revision, its declared and concluded licenses,
    and descendantOf relationships for its lineage. Raises if the AI profile is not satisfied."""
    g = _Graph(f"urn:hubd:audit:{uuid.uuid4()}#")
    tool = g.add("tool-hubd", "Tool", name=f"hubd {report.version}")
    agent = g.add("agent-hubd", "SoftwareAgent", name="hubd")
    roots = []
    # Audited revisions are ai_AIPackages even when a derivative sorts first and names them.
    audited = {f"model-{r.row.repo_id}@{r.row.commit}" for r in report.revisions}
    for r in report.revisions:
        row = r.row
        org = row.org
        supplier = (
            g.id(f"org-{org}")
            if g.has(f"org-{org}")
            else g.add(f"org-{org}", "Organization", name=org)
        )
        datasets = ", ".join(row.card.datasets) if row.card and row.card.datasets else None
        package = g.add(
            f"model-{row.repo_id}@{row.commit}",
            "ai_AIPackage",
            name=row.repo_id,
            software_packageVersion=row.commit,
            software_downloadLocation=f"{row.source}/{row.repo_id}/tree/{row.commit}",
            software_primaryPurpose="model",
            suppliedBy=supplier,
            releaseTime=row.mirrored_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            verifiedUsing=[{"type": "Hash", "algorithm": "sha1", "hashValue": row.commit}],
            ai_informationAboutTraining=f"datasets: {datasets}" if datasets else "noAssertion",
            comment=(
                f"releaseTime is when hubd mirrored this revision. Class "
                f"{r.effective.license.license_class}; OSAID verdict {r.openness.verdict}; "
                f"estimated MOF class {r.openness.mof_class}; policy: {r.decision.message}"
            ),
        )
        roots.append(package)
        g.relate(package, "hasDeclaredLicense", [g.license(r.declared.license.spdx)])
        concluded = " AND ".join(
            dict.fromkeys(lic.spdx for lic in r.effective.licenses if lic.spdx != "NOASSERTION")
        )
        g.relate(package, "hasConcludedLicense", [g.license(concluded or "NOASSERTION")])
        files = [
            g.add(
                f"file-{row.repo_id}@{row.commit}/{f.path}",
                "software_File",
                name=f.path,
                verifiedUsing=[{"type": "Hash", "algorithm": "sha256", "hashValue": f.sha256}],
            )
            for f in row.files
        ]
        if files:
            g.relate(package, "contains", files)
        parents = []
        for a in r.effective.ancestors:
            if a.via != row.repo_id:
                continue
            key = f"model-{a.repo}@{a.commit}"
            if key not in audited and not g.has(key):
                g.add(
                    key,
                    "software_Package",
                    name=a.repo,
                    **({"software_packageVersion": a.commit} if a.commit else {}),
                    comment=f"{a.relation} base; "
                    + (f"license {a.license.spdx}" if a.commit else "not in the hubd catalog"),
                )
            parents.append(g.id(key))
        if parents:
            g.relate(package, "descendantOf", parents)
    document = {
        "type": "SpdxDocument",
        "spdxId": g.id("document"),
        "creationInfo": "_:creationinfo",
        "name": "hubd compliance audit",
        "profileConformance": ["core", "software", "simpleLicensing", "ai"],
        "dataLicense": g.license("CC0-1.0"),
        "rootElement": roots,
        "element": [e["spdxId"] for e in g.elements],
    }
    creation = {
        "type": "CreationInfo",
        "@id": "_:creationinfo",
        "specVersion": "3.0.1",
        "created": _timestamp(report),
        "createdBy": [agent],
        "createdUsing": [tool],
    }
    doc = {"@context": SPDX_CONTEXT, "@graph": [creation, document, *g.elements]}
    problems = spdx_problems(doc)
    if problems:
        raise RuntimeError("SPDX document fails the AI profile: " + "; ".join(problems))
    return doc


def spdx_problems(doc: dict[str, Any]) -> list[str]:
    """What the SPDX 3.0.1 AI profile requires and ``doc`` lacks (empty when conformant).

    Every element has a type, a unique spdxId and creationInfo; each ai_AIPackage has the fields the
    profile makes mandatory and exactly one hasDeclaredLicense and one hasConcludedLicense
    relationship to a license; relationships point at elements that exist.
    """
    problems = []
    if doc.get("@context") != SPDX_CONTEXT:
        problems.append(f"@context is not {SPDX_CONTEXT}")
    graph = doc.get("@graph") or []
    infos = {e.get("@id"): e for e in graph if e.get("type") == "CreationInfo"}
    for info in infos.values():
        if (
            info.get("specVersion") != "3.0.1"
            or not info.get("created")
            or not info.get("createdBy")
        ):
            problems.append("CreationInfo needs specVersion 3.0.1, created and createdBy")
    elements = {e.get("spdxId"): e for e in graph if e.get("type") != "CreationInfo"}
    counts = Counter(e.get("spdxId") for e in graph if e.get("type") != "CreationInfo")
    problems += [f"spdxId {i} is used by {n} elements" for i, n in counts.items() if n > 1]
    for spdx_id, e in elements.items():
        if not spdx_id or e.get("creationInfo") not in infos:
            problems.append(f"{e.get('type')} {spdx_id!r} lacks an spdxId or creationInfo")
    licenses = {
        i for i, e in elements.items() if e.get("type") == "simplelicensing_LicenseExpression"
    }
    licenses.add(NO_ASSERTION)
    relationships = [e for e in elements.values() if e.get("type") == "Relationship"]
    for rel in relationships:
        ends = [rel.get("from"), *(rel.get("to") or [])]
        if not rel.get("to") or any(x not in elements and x not in licenses for x in ends):
            problems.append(f"relationship {rel.get('spdxId')} points at a missing element")
    for spdx_id, e in elements.items():
        if e.get("type") != "ai_AIPackage":
            continue
        problems += [f"{spdx_id}: missing {field}" for field in AI_REQUIRED if not e.get(field)]
        for kind in ("hasDeclaredLicense", "hasConcludedLicense"):
            found = [
                r
                for r in relationships
                if r.get("from") == spdx_id and r.get("relationshipType") == kind
            ]
            if len(found) != 1 or not set(found[0].get("to") or []) <= licenses:
                problems.append(f"{spdx_id}: needs exactly one {kind} to a license")
    document = [e for e in elements.values() if e.get("type") == "SpdxDocument"]
    if len(document) != 1 or not set(document[0].get("rootElement") or []) <= set(elements):
        problems.append("one SpdxDocument whose rootElement exists is required")
    return problems
