"""A generated corpus of model repos for compliance audits: every license class and the hard cases
(``license: other`` with and without ``license_name``, no license, GGUF metadata that contradicts
the card, an adapter on a restricted base, a merge of bases under different licenses, a pickle
that calls ``os.system``), each with the class and SPDX id an audit must find.

:func:`seed` puts a repo straight into a catalog and store, as ``hubd mirror`` would record it,
for tests that need no server; the same files can be served by FakeHub for end-to-end tests.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from safetensors.numpy import save

from hubd import __version__
from hubd.catalog.revisions import FileRecord, RevisionRecord, record_revision
from hubd.context import Context
from hubd.model.card import card_record
from hubd.model.lineage import adapter_lineage
from hubd.store import Expected

from .modelgen import _readme, tiny_llama_gguf

MIT_TEXT = (
    "MIT License\n\nCopyright (c) 2024 Acme\n\nPermission is hereby granted, free of charge, to "
    "any person obtaining a copy of this software and associated documentation files...\n"
)
LLAMA3_TEXT = "META LLAMA 3 COMMUNITY LICENSE AGREEMENT\nMeta Llama 3 Version Release Date: ...\n"


class _RunsShell:
    """Pickles as a call to os.system: what a malicious pytorch_model.bin does on torch.load."""

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, ("echo hubd-test-payload",))


def evil_pickle() -> bytes:
    """A pickle that would run a shell command when loaded. Never unpickle it."""
    return pickle.dumps({"model.weight": _RunsShell()})


def weights(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return save({"w": rng.standard_normal((4, 4), dtype=np.float32)}, metadata={"format": "pt"})


def repo_files(
    card: Mapping[str, Any], body: str = "A test model.", extra: Mapping[str, bytes] | None = None
) -> dict[str, bytes]:
    """A README with this card metadata, one small safetensors file and ``extra`` files."""
    files = {"README.md": _readme(card, body), "model.safetensors": weights(len(body))}
    return files | dict(extra or {})


@dataclass(frozen=True)
class Case:
    repo: str
    files: dict[str, bytes]
    license_class: str  # the effective class an audit must report
    spdx: str  # the effective SPDX id or LicenseRef
    what: str


def cases() -> list[Case]:
    """The corpus, bases before the repos derived from them."""
    open_body = (
        "# Model card\n\nTraining code: https://github.com/acme/train\n\n"
        "Paper: https://arxiv.org/abs/2401.00001\n\n## Training data\n\nThe Pile.\n\n"
        "## Evaluation\n\nSee model-index.\n"
    )
    return [
        Case(
            "acme/open-apache",
            repo_files(
                {
                    "license": "apache-2.0",
                    "datasets": ["acme/corpus"],
                    "library_name": "transformers",
                },
                open_body,
                {"config.json": b'{"model_type": "llama"}\n'},
            ),
            "osi-open-source",
            "Apache-2.0",
            "OSI license with training code and data information: open source AI",
        ),
        Case("acme/weights-mit", repo_files({"license": "mit"}), "osi-open-source", "MIT", "MIT"),
        Case("acme/cc-by", repo_files({"license": "cc-by-4.0"}), "open-content", "CC-BY-4.0", "CC"),
        Case(
            "acme/cdla",
            repo_files({"license": "cdla-permissive-2.0"}),
            "open-content",
            "CDLA-Permissive-2.0",
            "data license",
        ),
        Case(
            "meta/llama3-base",
            repo_files({"license": "llama3"}, extra={"LICENSE": LLAMA3_TEXT.encode()}),
            "open-weight-restricted",
            "LicenseRef-Llama-3",
            "Llama 3 community license, card and LICENSE agree",
        ),
        Case(
            "acme/rail",
            repo_files({"license": "bigscience-openrail-m"}),
            "open-weight-restricted",
            "LicenseRef-BigScience-OpenRAIL-M",
            "RAIL family",
        ),
        Case(
            "acme/gemma-ft",
            repo_files({"license": "gemma"}),
            "open-weight-restricted",
            "LicenseRef-Gemma",
            "Gemma terms",
        ),
        Case(
            "acme/nc",
            repo_files({"license": "cc-by-nc-4.0"}),
            "non-commercial",
            "CC-BY-NC-4.0",
            "non-commercial",
        ),
        Case(
            "acme/nd",
            repo_files({"license": "cc-by-nd-4.0"}),
            "non-commercial",
            "CC-BY-ND-4.0",
            "no derivatives",
        ),
        Case("acme/no-license", repo_files({"tags": ["x"]}), "unknown", "NOASSERTION", "missing"),
        Case(
            "acme/other-bare",
            repo_files({"license": "other"}),
            "unknown",
            "NOASSERTION",
            "license: other without license_name",
        ),
        Case(
            "acme/other-llama31",
            repo_files(
                {
                    "license": "other",
                    "license_name": "llama3.1",
                    "license_link": "https://github.com/meta-llama/llama-models/blob/main/models/llama3_1/LICENSE",
                }
            ),
            "open-weight-restricted",
            "LicenseRef-Llama-3.1",
            "license: other with a recognised license_name",
        ),
        Case(
            "acme/other-eula",
            repo_files({"license": "other", "license_name": "acme-eula"}),
            "unknown",
            "LicenseRef-acme-eula",
            "license: other with an unrecognised license_name",
        ),
        Case(
            "acme/license-file",
            repo_files({}, extra={"LICENSE": MIT_TEXT.encode()}),
            "osi-open-source",
            "MIT",
            "no card license, a LICENSE file",
        ),
        Case(
            "acme/gguf-says-llama",
            {
                "README.md": _readme({"license": "apache-2.0"}, "A GGUF."),
                "model.gguf": tiny_llama_gguf(license="llama3.1"),
            },
            "open-weight-restricted",
            "LicenseRef-Llama-3.1",
            "GGUF general.license contradicts the card",
        ),
        Case(
            "acme/lora-on-llama",
            repo_files(
                {
                    "license": "apache-2.0",
                    "base_model": "meta/llama3-base",
                    "base_model_relation": "adapter",
                },
                extra={"adapter_config.json": b'{"peft_type": "LORA"}'},
            ),
            "open-weight-restricted",
            "LicenseRef-Llama-3",
            "an apache-2.0 LoRA on a Llama 3 base",
        ),
        Case(
            "acme/merge",
            repo_files(
                {
                    "license": "apache-2.0",
                    "base_model": ["acme/weights-mit", "acme/nc"],
                    "base_model_relation": "merge",
                }
            ),
            "non-commercial",
            "CC-BY-NC-4.0",
            "a merge of an MIT and a CC-BY-NC base",
        ),
        Case(
            "acme/orphan-ft",
            repo_files({"license": "mit", "base_model": "nobody/not-mirrored"}),
            "unknown",
            "NOASSERTION",
            "a fine-tune whose base is not in the catalog",
        ),
        Case(
            "acme/evil-pickle",
            {
                "README.md": _readme({"license": "mit"}, "Weights as a pickle."),
                "pytorch_model.bin": evil_pickle(),
            },
            "osi-open-source",
            "MIT",
            "pickle-only weights that call os.system",
        ),
    ]


def put_blob(ctx: Context, path: str, data: bytes) -> str:
    """Store ``data`` as a verified blob, as a mirror would; returns its sha256."""
    digest = hashlib.sha256(data).hexdigest()
    with ctx.store.writer(Expected(path, len(data), digest)) as writer:
        if writer.present is None:
            writer.write(data)
            writer.commit()
    return digest


def seed(
    ctx: Context, repo_id: str, files: Mapping[str, bytes], *, refs: tuple[str, ...] = ("main",)
) -> str:
    """Record ``files`` as a verified revision of ``repo_id`` as `hubd mirror` would: its commit."""
    digests = {path: put_blob(ctx, path, data) for path, data in files.items()}
    commit = hashlib.sha1(
        f"{repo_id}\n{sorted(digests.items())}".encode(), usedforsecurity=False
    ).hexdigest()
    ctx.store.link_snapshot(repo_id, commit, digests.items())
    text = files["README.md"].decode() if "README.md" in files else None
    card = card_record(text, {}, None)
    is_adapter, base = adapter_lineage(
        {p: ctx.store.blob_path(d) for p, d in digests.items()}, card
    )
    record = RevisionRecord(
        repo_id=repo_id,
        commit=commit,
        source_endpoint="https://huggingface.co",
        refs=refs,
        files=[FileRecord(p, len(files[p]), d, None, True) for p, d in digests.items()],
        card=card,
        is_adapter=is_adapter,
        base_model=base,
        node="test-node",
        client=f"hubd/{__version__}",
        fetched_at=datetime.now(UTC),
    )
    with ctx.catalog.begin() as session:
        record_revision(session, record)
    return commit
