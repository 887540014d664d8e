"""Write schemas/*.json from the pydantic models that own the shapes (`make schemas`).

The models are the truth: hubd validates what it reads with them and builds what it writes with
them, so a schema written by hand could only drift. tests/test_schemas.py fails when a committed
file differs from what this script writes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
BASE = "https://hubd.dev/schemas/"

# schemas/<name> -> "module:Model" that owns the shape.
MODELS: dict[str, str] = {
    "attestations.schema.json": "hubd.trust.provenance:Attestations",
    "audit-report.schema.json": "hubd.audit.report:AuditReport",
    "bundle-index.schema.json": "hubd.bundle.format:Index",
    "commit-header.schema.json": "hubd.server.upload:CommitHeader",
    "lfs-batch-request.schema.json": "hubd.server.upload:LfsBatchBody",
    "catalog-repo.schema.json": "hubd.catalog.views:CatalogRepo",
    "config.schema.json": "hubd.config:ConfigFile",
    "listing.schema.json": "hubd.bundle.format:Listing",
    "manifest.schema.json": "hubd.catalog.views:Manifest",
    "mirror-request.schema.json": "hubd.ops.requests:MirrorRequest",
    "mirror-result.schema.json": "hubd.ops.mirror:MirrorResult",
    "oms-bundle.schema.json": "hubd.trust.oms:OmsBundle",
    "policy.schema.json": "hubd.audit.policy:PolicyFile",
    "preupload-request.schema.json": "hubd.server.upload:PreuploadBody",
    "provenance.schema.json": "hubd.trust.provenance:ProvenanceReport",
    "slsa-provenance.schema.json": "hubd.trust.provenance:Statement",
    "trust-policy.schema.json": "hubd.trust.policy:TrustPolicyFile",
    "verify-report.schema.json": "hubd.ops.verify:VerifyReport",
}


def model(name: str) -> type[BaseModel]:
    module, _, attr = MODELS[name].partition(":")
    found: type[BaseModel] = getattr(importlib.import_module(module), attr)
    return found


def render(name: str) -> str:
    """The text of schemas/NAME as the model defines it."""
    body: dict[str, Any] = model(name).model_json_schema(mode="validation")
    head = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": BASE + name}
    return json.dumps({**head, **body}, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    args = parser.parse_args(argv)
    stale = []
    for name in sorted(MODELS):
        text, path = render(name), SCHEMAS / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text)
    verb = "differ from their models" if args.check else "written"
    if stale:
        print(f"schemas {verb}: {', '.join(stale)}", file=sys.stderr)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
