"""Security scans of a revision's files in the verified store: pickles, safetensors, GGUF.

Each distinct blob is read once per audit (blobs are shared across repos and revisions), and
only its header or pickle opcodes are read, never tensor data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidModelFile
from ..model.gguf import inspect
from ..model.pickles import PICKLE_SUFFIXES, scan_pickle
from ..model.safetensors import header_problem
from ..store import Store
from .facts import FileRow

SEVERITIES = ("critical", "high", "medium", "low")
SAFE_WEIGHTS = (".safetensors", ".gguf", ".onnx", ".tflite", ".mlmodel")
# Pickles that hold weights (training_args.bin and the like are scanned but do not count).
_WEIGHT_STEMS = ("pytorch_model", "model", "adapter_model", "consolidated", "diffusion_pytorch")


@dataclass(frozen=True)
class Finding:
    path: str
    severity: str  # one of SEVERITIES
    check: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "severity": self.severity,
            "check": self.check,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class BlobScan:
    problems: tuple[tuple[str, str, str], ...]  # (severity, check, detail)
    gguf_license: str | None = None


class Scanner:
    """Scans blobs by content, remembering each answer for the rest of the audit."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: dict[tuple[str, str], BlobScan] = {}

    def blob(self, item: FileRow) -> BlobScan:
        kind = _kind(item.path)
        key = (item.sha256, kind)
        if key not in self._seen:
            self._seen[key] = self._scan(item, kind)
        return self._seen[key]

    def _scan(self, item: FileRow, kind: str) -> BlobScan:
        if not kind:
            return BlobScan(())
        try:
            path = self.store.local_blob(item.sha256)  # on S3: the verified local copy
        except FileNotFoundError:
            return BlobScan((("medium", "blob-missing", "not in the store; run `hubd verify`"),))
        if kind == "safetensors":
            problem = header_problem(path)
            return BlobScan(() if problem is None else (("high", "safetensors-header", problem),))
        if kind == "gguf":
            try:
                return BlobScan((), inspect(path, item.path).license)
            except InvalidModelFile as exc:
                return BlobScan((("high", "gguf-header", exc.message),))
        scan = scan_pickle(path)
        problems = [
            (
                ("critical", "pickle-import", f"imports {i.module}.{i.name}: runs when loaded")
                if i.dangerous
                else ("medium", "pickle-import", f"imports {i.module}.{i.name} (not known safe)")
            )
            for i in scan.imports
        ]
        if scan.parse_error:
            problems.append(
                ("low", "pickle-parse", "the pickle stream could not be read to its end")
            )
        return BlobScan(tuple(problems))

    def revision(self, files: Sequence[FileRow]) -> list[Finding]:
        """Every problem in the revision's files, plus a repo whose weights are only pickles."""
        findings = [
            Finding(item.path, severity, check, detail)
            for item in files
            for severity, check, detail in self.blob(item).problems
        ]
        pickled = [f.path for f in files if _kind(f.path) == "pickle" and _is_weights(f.path)]
        if pickled and not any(f.path.endswith(SAFE_WEIGHTS) for f in files):
            findings.append(
                Finding(
                    "*",
                    "high",
                    "pickle-only",
                    f"weights only in pickle-based files ({', '.join(pickled[:3])}): loading them "
                    "can run code; there is no safetensors or GGUF copy",
                )
            )
        return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.path))


def _kind(path: str) -> str:
    lower = path.lower()
    if lower.endswith(".safetensors"):
        return "safetensors"
    if lower.endswith(".gguf"):
        return "gguf"
    return "pickle" if lower.endswith(PICKLE_SUFFIXES) else ""


def _is_weights(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name.startswith(_WEIGHT_STEMS) or not name.endswith(".bin")
