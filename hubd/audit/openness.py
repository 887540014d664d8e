"""Open source or only open weights: the OSI Open Source AI Definition 1.0 verdict and an estimated
Model Openness Framework (MOF) class, from what the card and the files show.

hubd sees evidence, not proof: a training-code link does not show the code runs or is OSI
licensed. So each component is reported with what was found or that it is missing, and the MOF
class is an estimate a person can check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..model.pickles import PICKLE_SUFFIXES
from .facts import RevisionRow
from .licenses import License, LicenseClass
from .scan import SAFE_WEIGHTS

MOF_REQUIRED: dict[str, tuple[str, ...]] = {
    "III": (
        "model architecture",
        "final parameters",
        "model card",
        "data card",
        "technical report",
        "evaluation results",
    ),
    "II": (
        "training code",
        "inference code",
        "evaluation code",
        "evaluation data",
        "supporting libraries",
    ),
    "I": ("research paper", "datasets", "data preprocessing code", "intermediate parameters"),
}
OPEN_PARAMETERS = (LicenseClass.OSI, LicenseClass.OPEN_CONTENT)
LIBRARIES = {
    "transformers": "transformers",
    "peft": "peft",
    "diffusers": "diffusers",
    "sentence-transformers": "sentence-transformers",
    "timm": "timm",
    "gguf": "llama.cpp",
    "llama.cpp": "llama.cpp",
    "mlx": "mlx",
    "onnx": "onnxruntime",
    "keras": "keras",
    "open_clip": "open_clip",
    "spacy": "spaCy",
    "nemo": "NeMo",
    "vllm": "vLLM",
}
_URL = re.compile(r"https?://[^\s)\]>\"'`]+")
_CODE_HOSTS = ("github.com", "gitlab.com", "codeberg.org", "bitbucket.org")
_PAPER = re.compile(r"arxiv\.org/(?:abs|pdf)/|doi\.org/|openreview\.net/|aclanthology\.org/")
_HEADING = re.compile(r"^#+\s*(.+)$", re.MULTILINE)
_CHECKPOINT = re.compile(r"(?:^|/|-|_)(?:step|checkpoint|ckpt|epoch|stage)[-_]?\d+", re.IGNORECASE)


@dataclass(frozen=True)
class Evidence:
    component: str
    found: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "found": self.found, "detail": self.detail}


@dataclass(frozen=True)
class Openness:
    verdict: str  # open-source | open-weight | unknown
    reasons: tuple[str, ...]
    mof_class: str  # III | II | I | none
    evidence: tuple[Evidence, ...]
    missing: tuple[str, ...]  # what the next MOF class up would need


def assess(row: RevisionRow, license: License) -> Openness:
    evidence = {e.component: e for e in _evidence(row)}
    open_params = license.license_class in OPEN_PARAMETERS
    reached, missing = "none", []
    if not open_params:
        missing.append(f"parameters under an open license (they are {license.license_class})")
    for mof, components in MOF_REQUIRED.items():
        lacking = [c for c in components if not evidence[c].found]
        if lacking or not open_params:
            missing += lacking
            break
        reached = mof
    reasons = _osaid(license, evidence)
    if all(ok for ok, _ in reasons):
        verdict = "open-source"
    elif license.license_class == LicenseClass.UNKNOWN:
        verdict = "unknown"
    else:
        verdict = "open-weight"
    return Openness(
        verdict,
        tuple(text for _, text in reasons),
        reached,
        tuple(evidence.values()),
        tuple(missing),
    )


def _osaid(license: License, evidence: dict[str, Evidence]) -> list[tuple[bool, str]]:
    """The three OSAID 1.0 requirements: parameters, code, data information."""
    osi = license.license_class == LicenseClass.OSI
    params = (
        f"parameters: {license.spdx} is OSI-approved"
        if osi
        else f"parameters: {license.key} is not an OSI-approved license ({license.license_class})"
    )
    code_parts = [evidence["training code"], evidence["inference code"]]
    code_ok = all(e.found for e in code_parts)
    code = "code: " + "; ".join(
        f"{e.component} {'found' if e.found else 'missing'}" for e in code_parts
    )
    data = evidence["data card"]
    info = f"data information: {data.detail}" if data.found else "data information: missing"
    return [(osi, params), (code_ok, code), (data.found, info)]


def _pick(component: str, *options: tuple[object, str], missing: str = "not found") -> Evidence:
    """The first option whose evidence is present, else the component is missing."""
    for present, detail in options:
        if present:
            return Evidence(component, True, detail)
    return Evidence(component, False, missing)


def _evidence(row: RevisionRow) -> list[Evidence]:
    card = row.card
    data: dict[str, Any] = card.data if card else {}
    text = (card.text or "") if card else ""
    datasets = card.datasets if card else []
    paths = [f.path for f in row.files]
    names = [p.rsplit("/", 1)[-1].lower() for p in paths]
    lines = [line.lower() for line in text.splitlines() if _URL.search(line)]
    headings = [h.lower() for h in _HEADING.findall(text)]
    papers = [u for line in lines for u in _URL.findall(line) if _PAPER.search(u)]
    papers += [t for t in (card.tags if card else []) if t.lower().startswith("arxiv:")]
    library = _library(data, names)
    results = data.get("model-index") or []
    eval_sets = sorted(
        {
            str(r["dataset"].get("name") or r["dataset"].get("type"))
            for m in results
            if isinstance(m, dict)
            for r in m.get("results") or []
            if isinstance(r, dict) and isinstance(r.get("dataset"), dict)
        }
    )
    weights = [p for p in paths if p.lower().endswith(SAFE_WEIGHTS + PICKLE_SUFFIXES)]
    modeling = [p for p, n in zip(paths, names, strict=True) if n.startswith("modeling_")]
    checkpoints = [r for r in row.refs if _CHECKPOINT.search(r)]
    checkpoints += [p for p in paths if "/" in p and _CHECKPOINT.search(p.rsplit("/", 1)[0])]
    data_headings = [h for h in headings if "training data" in h or "dataset" in h]
    eval_headings = [h for h in headings if any(w in h for w in ("evaluation", "result", "bench"))]

    def code(component: str, words: tuple[str, ...], files: str) -> Evidence:
        """Code in the repo by file name, else a code-host link on a card line naming it."""
        pattern = re.compile(files)
        local = [p for p, n in zip(paths, names, strict=True) if pattern.search(n)]
        linked = [
            u
            for line in lines
            if any(w in line for w in words)
            for u in _URL.findall(line)
            if any(h in u for h in _CODE_HOSTS)
        ]
        return _pick(
            component, (local, ", ".join(local[:3])), (linked, "linked: " + ", ".join(linked[:1]))
        )

    return [
        _pick(
            "model architecture",
            ("config.json" in paths, "config.json"),
            (any(n.endswith(".gguf") for n in names), "GGUF metadata"),
            (modeling, ", ".join(modeling)),
        ),
        _pick("final parameters", (weights, ", ".join(weights[:3])), missing="no weights mirrored"),
        _pick("model card", (text.strip(), "README.md"), missing="no README.md"),
        _pick(
            "data card",
            (datasets, f"datasets listed: {', '.join(datasets)}"),
            (data_headings, "card section " + ", ".join(data_headings[:1])),
        ),
        _pick(
            "technical report",
            (papers, ", ".join(papers[:1])),
            ("technical report" in text.lower(), "mentioned in the card"),
        ),
        _pick(
            "evaluation results",
            (results, "model-index in the card"),
            (eval_headings, "card section " + ", ".join(eval_headings[:1])),
        ),
        code(
            "training code",
            ("train",),
            r"^(?:train|finetune|fine_tune|pretrain)\w*\.(?:py|sh|ipynb)$",
        ),
        _pick("inference code", (library, f"library: {library}"), (modeling, ", ".join(modeling))),
        code(
            "evaluation code",
            ("eval", "benchmark"),
            r"^(?:eval|evaluate|benchmark)\w*\.(?:py|sh|ipynb)$",
        ),
        _pick(
            "evaluation data",
            (eval_sets, ", ".join(eval_sets)),
            missing="no datasets in model-index results",
        ),
        _pick("supporting libraries", (library, f"{library} (open source)")),
        _pick("research paper", (papers, ", ".join(papers[:1]))),
        _pick(
            "datasets",
            (datasets, f"{', '.join(datasets)} (licenses not in the model card: check each one)"),
            missing="not listed",
        ),
        code(
            "data preprocessing code",
            ("preprocess", "data processing", "data pipeline", "tokeniz"),
            r"^(?:preprocess|prepare_data|data_prep|process_data)\w*\.(?:py|sh|ipynb)$",
        ),
        _pick(
            "intermediate parameters",
            (checkpoints, ", ".join(checkpoints[:3])),
            missing="no checkpoint refs or folders",
        ),
    ]


def _library(data: dict[str, Any], names: list[str]) -> str | None:
    declared = str(data.get("library_name") or "").lower()
    if declared in LIBRARIES:
        return LIBRARIES[declared]
    if "adapter_config.json" in names:
        return "peft"
    if "config.json" in names:
        return "transformers"
    if any(n.endswith(".gguf") for n in names):
        return "llama.cpp"
    return None
