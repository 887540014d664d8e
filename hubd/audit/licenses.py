"""License identifiers, the five classes a compliance officer sorts them into, and recognition.

Sources name licenses in many spellings: the Hub's card identifiers (``llama3.1``), SPDX ids
(``Apache-2.0``), free text in ``license_name``, a ``license_link`` URL, a LICENSE file, GGUF
``general.license``. Each is reduced to one :class:`License` of the table below, or to nothing.
Identifiers that are not on the SPDX list become ``LicenseRef-…`` so BOMs stay valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache


class LicenseClass(StrEnum):
    """Ordered from least to most restrictive; lineage inherits the most restrictive."""

    OSI = "osi-open-source"
    OPEN_CONTENT = "open-content"
    RESTRICTED = "open-weight-restricted"
    NON_COMMERCIAL = "non-commercial"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {c: i for i, c in enumerate(LicenseClass)}


@dataclass(frozen=True)
class License:
    key: str  # the Hub's card identifier, lower case
    spdx: str  # SPDX id or LicenseRef-…
    license_class: LicenseClass
    name: str


OSI, CONTENT, RESTRICTED, NC, UNKNOWN = (
    LicenseClass.OSI,
    LicenseClass.OPEN_CONTENT,
    LicenseClass.RESTRICTED,
    LicenseClass.NON_COMMERCIAL,
    LicenseClass.UNKNOWN,
)

# (card identifier, SPDX id or LicenseRef, class, name): the Hub's license list and the custom
# model licenses seen in `license_name`.
_TABLE: list[tuple[str, str, LicenseClass, str]] = [
    ("apache-2.0", "Apache-2.0", OSI, "Apache License 2.0"),
    ("mit", "MIT", OSI, "MIT License"),
    ("mit-0", "MIT-0", OSI, "MIT No Attribution"),
    ("0bsd", "0BSD", OSI, "BSD Zero Clause License"),
    ("afl-3.0", "AFL-3.0", OSI, "Academic Free License 3.0"),
    ("artistic-2.0", "Artistic-2.0", OSI, "Artistic License 2.0"),
    ("bsl-1.0", "BSL-1.0", OSI, "Boost Software License 1.0"),
    ("bsd", "LicenseRef-BSD", OSI, "BSD license family"),
    ("bsd-2-clause", "BSD-2-Clause", OSI, "BSD 2-Clause License"),
    ("bsd-3-clause", "BSD-3-Clause", OSI, "BSD 3-Clause License"),
    ("bsd-3-clause-clear", "BSD-3-Clause-Clear", OSI, "BSD 3-Clause Clear License"),
    ("ecl-2.0", "ECL-2.0", OSI, "Educational Community License 2.0"),
    ("epl-1.0", "EPL-1.0", OSI, "Eclipse Public License 1.0"),
    ("epl-2.0", "EPL-2.0", OSI, "Eclipse Public License 2.0"),
    ("eupl-1.1", "EUPL-1.1", OSI, "European Union Public License 1.1"),
    ("eupl-1.2", "EUPL-1.2", OSI, "European Union Public License 1.2"),
    ("agpl-3.0", "AGPL-3.0-only", OSI, "GNU Affero General Public License 3.0"),
    ("gpl", "LicenseRef-GPL", OSI, "GNU General Public License family"),
    ("gpl-2.0", "GPL-2.0-only", OSI, "GNU General Public License 2.0"),
    ("gpl-3.0", "GPL-3.0-only", OSI, "GNU General Public License 3.0"),
    ("lgpl", "LicenseRef-LGPL", OSI, "GNU Lesser General Public License family"),
    ("lgpl-2.1", "LGPL-2.1-only", OSI, "GNU Lesser General Public License 2.1"),
    ("lgpl-3.0", "LGPL-3.0-only", OSI, "GNU Lesser General Public License 3.0"),
    ("isc", "ISC", OSI, "ISC License"),
    ("lppl-1.3c", "LPPL-1.3c", OSI, "LaTeX Project Public License 1.3c"),
    ("ms-pl", "MS-PL", OSI, "Microsoft Public License"),
    ("mpl-2.0", "MPL-2.0", OSI, "Mozilla Public License 2.0"),
    ("osl-3.0", "OSL-3.0", OSI, "Open Software License 3.0"),
    ("postgresql", "PostgreSQL", OSI, "PostgreSQL License"),
    ("ncsa", "NCSA", OSI, "University of Illinois/NCSA Open Source License"),
    ("ofl-1.1", "OFL-1.1", OSI, "SIL Open Font License 1.1"),
    ("unlicense", "Unlicense", OSI, "The Unlicense"),
    ("zlib", "Zlib", OSI, "zlib License"),
    ("cc0-1.0", "CC0-1.0", CONTENT, "Creative Commons Zero 1.0"),
    ("cc-by-2.0", "CC-BY-2.0", CONTENT, "Creative Commons Attribution 2.0"),
    ("cc-by-2.5", "CC-BY-2.5", CONTENT, "Creative Commons Attribution 2.5"),
    ("cc-by-3.0", "CC-BY-3.0", CONTENT, "Creative Commons Attribution 3.0"),
    ("cc-by-4.0", "CC-BY-4.0", CONTENT, "Creative Commons Attribution 4.0"),
    ("cc-by-sa-3.0", "CC-BY-SA-3.0", CONTENT, "Creative Commons Attribution Share Alike 3.0"),
    ("cc-by-sa-4.0", "CC-BY-SA-4.0", CONTENT, "Creative Commons Attribution Share Alike 4.0"),
    ("cdla-sharing-1.0", "CDLA-Sharing-1.0", CONTENT, "Community Data License Agreement Sharing"),
    ("cdla-permissive-1.0", "CDLA-Permissive-1.0", CONTENT, "CDLA Permissive 1.0"),
    ("cdla-permissive-2.0", "CDLA-Permissive-2.0", CONTENT, "CDLA Permissive 2.0"),
    ("odc-by", "ODC-By-1.0", CONTENT, "Open Data Commons Attribution License"),
    ("odbl", "ODbL-1.0", CONTENT, "Open Data Commons Open Database License"),
    ("pddl", "PDDL-1.0", CONTENT, "Open Data Commons Public Domain Dedication"),
    ("etalab-2.0", "etalab-2.0", CONTENT, "Etalab Open License 2.0"),
    ("gfdl", "LicenseRef-GFDL", CONTENT, "GNU Free Documentation License family"),
    ("lgpl-lr", "LGPLLR", CONTENT, "Lesser GPL for Linguistic Resources"),
    ("wtfpl", "WTFPL", CONTENT, "Do What The F*ck You Want To Public License"),
    ("openmdw-1.0", "LicenseRef-OpenMDW-1.0", CONTENT, "OpenMDW License 1.0"),
    ("openrail", "LicenseRef-OpenRAIL", RESTRICTED, "OpenRAIL license family"),
    ("openrail++", "LicenseRef-OpenRAILpp", RESTRICTED, "OpenRAIL++-M License"),
    (
        "bigscience-openrail-m",
        "LicenseRef-BigScience-OpenRAIL-M",
        RESTRICTED,
        "BigScience OpenRAIL-M",
    ),
    (
        "creativeml-openrail-m",
        "LicenseRef-CreativeML-OpenRAIL-M",
        RESTRICTED,
        "CreativeML OpenRAIL-M",
    ),
    (
        "bigscience-bloom-rail-1.0",
        "LicenseRef-BigScience-BLOOM-RAIL-1.0",
        RESTRICTED,
        "BigScience BLOOM RAIL 1.0",
    ),
    ("bigcode-openrail-m", "LicenseRef-BigCode-OpenRAIL-M", RESTRICTED, "BigCode Open RAIL-M v1"),
    ("llama2", "LicenseRef-Llama-2", RESTRICTED, "Llama 2 Community License"),
    ("llama3", "LicenseRef-Llama-3", RESTRICTED, "Meta Llama 3 Community License"),
    ("llama3.1", "LicenseRef-Llama-3.1", RESTRICTED, "Llama 3.1 Community License"),
    ("llama3.2", "LicenseRef-Llama-3.2", RESTRICTED, "Llama 3.2 Community License"),
    ("llama3.3", "LicenseRef-Llama-3.3", RESTRICTED, "Llama 3.3 Community License"),
    ("llama4", "LicenseRef-Llama-4", RESTRICTED, "Llama 4 Community License"),
    ("gemma", "LicenseRef-Gemma", RESTRICTED, "Gemma Terms of Use"),
    ("c-uda", "C-UDA-1.0", RESTRICTED, "Computational Use of Data Agreement"),
    ("qwen", "LicenseRef-Qwen", RESTRICTED, "Qwen License Agreement (user cap)"),
    ("deepseek", "LicenseRef-DeepSeek", RESTRICTED, "DeepSeek License Agreement"),
    ("falcon", "LicenseRef-Falcon-LLM", RESTRICTED, "TII Falcon LLM License"),
    ("yi", "LicenseRef-Yi", RESTRICTED, "Yi Series Models Community License"),
    (
        "nvidia-open-model-license",
        "LicenseRef-NVIDIA-Open-Model",
        RESTRICTED,
        "NVIDIA Open Model License",
    ),
    (
        "stabilityai-community",
        "LicenseRef-StabilityAI-Community",
        RESTRICTED,
        "Stability AI Community License (revenue cap)",
    ),
    ("cc-by-nc-2.0", "CC-BY-NC-2.0", NC, "Creative Commons Attribution Non Commercial 2.0"),
    ("cc-by-nc-3.0", "CC-BY-NC-3.0", NC, "Creative Commons Attribution Non Commercial 3.0"),
    ("cc-by-nc-4.0", "CC-BY-NC-4.0", NC, "Creative Commons Attribution Non Commercial 4.0"),
    ("cc-by-nd-4.0", "CC-BY-ND-4.0", NC, "Creative Commons Attribution No Derivatives 4.0"),
    ("cc-by-nc-nd-3.0", "CC-BY-NC-ND-3.0", NC, "Creative Commons BY-NC-ND 3.0"),
    ("cc-by-nc-nd-4.0", "CC-BY-NC-ND-4.0", NC, "Creative Commons BY-NC-ND 4.0"),
    ("cc-by-nc-sa-2.0", "CC-BY-NC-SA-2.0", NC, "Creative Commons BY-NC-SA 2.0"),
    ("cc-by-nc-sa-3.0", "CC-BY-NC-SA-3.0", NC, "Creative Commons BY-NC-SA 3.0"),
    ("cc-by-nc-sa-4.0", "CC-BY-NC-SA-4.0", NC, "Creative Commons BY-NC-SA 4.0"),
    (
        "fair-noncommercial-research-license",
        "LicenseRef-FAIR-Noncommercial-Research",
        NC,
        "FAIR Noncommercial Research License",
    ),
    ("deepfloyd-if-license", "LicenseRef-DeepFloyd-IF", NC, "DeepFloyd IF License"),
    ("h-research", "LicenseRef-H-Research", NC, "H Research License"),
    ("intel-research", "LicenseRef-Intel-Research", NC, "Intel Research Use License"),
    ("apple-amlr", "LicenseRef-Apple-AMLR", NC, "Apple Machine Learning Research Model License"),
    ("mistral-research", "LicenseRef-Mistral-Research", NC, "Mistral AI Research License"),
    ("qwen-research", "LicenseRef-Qwen-Research", NC, "Qwen Research License (non-commercial)"),
    ("cc", "LicenseRef-CC", UNKNOWN, "Creative Commons family (variant not stated)"),
]
LICENSES: dict[str, License] = {k: License(k, s, c, n) for k, s, c, n in _TABLE}
_BY_SPDX = {lic.spdx.lower(): lic for lic in LICENSES.values()}
# Words that do not name a license: the card has one only through license_name/link or a file.
PLACEHOLDERS = frozenset({"other", "unknown", "none", "noassertion", "proprietary", "custom"})

_ALIASES = {
    "apache": "apache-2.0",
    "apache-2": "apache-2.0",
    "apache2": "apache-2.0",
    "apache-license-2.0": "apache-2.0",
    "apache-license-version-2.0": "apache-2.0",
    "mit-license": "mit",
    "gemma-terms-of-use": "gemma",
    "gemma-license": "gemma",
    "tongyi-qianwen": "qwen",
    "tongyi-qianwen-license": "qwen",
    "qwen-license": "qwen",
    "deepseek-license": "deepseek",
    "falcon-llm-license": "falcon",
    "tii-falcon-llm-license": "falcon",
    "yi-license": "yi",
    "mrl": "mistral-research",
    "mistral-research-license": "mistral-research",
    "stabilityai-ai-community": "stabilityai-community",
    "stability-ai-community-license": "stabilityai-community",
}
_CC_ID = re.compile(r"^cc-by(?:-(?:nc|nd|sa))*-\d\.\d$")
_LLAMA = re.compile(
    r"^(?:meta-)?llama-?(\d)(?:[._-](\d))?(?:-community)?(?:-license)?(?:-agreement)?$"
)


def canonical(raw: str) -> str:
    """The lookup key of a license string: lower case, dashes, known aliases folded."""
    key = re.sub(r"[\s_]+", "-", raw.strip().lower())
    if m := _LLAMA.match(key):
        major, minor = m.groups()
        return f"llama{major}" + (f".{minor}" if minor and major == "3" else "")
    return _ALIASES.get(key, key)


@cache  # pure, and a catalog repeats the same few spellings many times
def lookup(raw: str) -> License | None:
    """A License for an identifier or a close spelling of one; None if unrecognised."""
    key = canonical(raw)
    if not key or key in PLACEHOLDERS:
        return None
    if known := LICENSES.get(key) or _BY_SPDX.get(key):
        return known
    return _by_family(key)


def _by_family(key: str) -> License | None:
    """Identifiers outside the table that still say which family they belong to."""
    ref = "LicenseRef-" + re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-")
    if key.startswith("cc-by"):
        restricted = "-nc" in key or "-nd" in key
        spdx = key.upper() if _CC_ID.match(key) else ref
        return License(key, spdx, NC if restricted else CONTENT, f"Creative Commons {key}")
    if "noncommercial" in key or "non-commercial" in key or key.endswith("research"):
        return License(key, ref, NC, key)
    if "rail" in key or key.startswith(("bigscience", "llama", "gemma")):
        return License(key, ref, RESTRICTED, key)
    return None


# license_link URLs: (pattern, key). A link to a file in the repo is read as that file instead.
_LINKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"apache\.org/licenses/license-2\.0"), "apache-2.0"),
    (re.compile(r"creativecommons\.org/publicdomain/zero/1\.0"), "cc0-1.0"),
    (re.compile(r"llama-models/.*/llama(\d)(?:_(\d))?/"), "llama"),
    (re.compile(r"llama\.meta\.com/llama(\d)(?:_(\d))?/license"), "llama"),
    (re.compile(r"ai\.meta\.com/(?:resources/models-and-libraries/)?llama(\d)?.*license"), "llama"),
    (re.compile(r"ai\.google\.dev/gemma/terms"), "gemma"),
    (re.compile(r"huggingface\.co/spaces/bigscience/license"), "bigscience-bloom-rail-1.0"),
    (re.compile(r"huggingface\.co/spaces/bigcode/bigcode-model-license"), "bigcode-openrail-m"),
    (re.compile(r"opensource\.org/licenses?/([\w.+-]+)"), "spdx"),
    (re.compile(r"spdx\.org/licenses/([\w.+-]+?)(?:\.html)?$"), "spdx"),
]
_CC = re.compile(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)")


@cache
def from_link(link: str) -> License | None:
    """The license a ``license_link`` URL points at, when it is a well-known one."""
    url = link.strip().lower()
    if m := _CC.search(url):
        return lookup(f"cc-{m.group(1)}-{m.group(2)}")
    for pattern, key in _LINKS:
        if m := pattern.search(url):
            if key == "spdx":
                return lookup(m.group(1))
            if key == "llama":
                major, minor = (*m.groups(), None, None)[:2]
                return lookup(f"llama{major or 2}" + (f".{minor}" if minor else ""))
            return LICENSES[key]
    return None


# Phrases that identify a license text, most specific first (text lower-cased, spaces collapsed).
_TEXTS: list[tuple[str, str]] = [
    ("llama 4 community license agreement", "llama4"),
    ("llama 3.3 community license agreement", "llama3.3"),
    ("llama 3.2 community license agreement", "llama3.2"),
    ("llama 3.1 community license agreement", "llama3.1"),
    ("meta llama 3 community license agreement", "llama3"),
    ("llama 2 community license agreement", "llama2"),
    ("gemma terms of use", "gemma"),
    ("tongyi qianwen license agreement", "qwen"),
    ("qwen license agreement", "qwen"),
    ("deepseek license agreement", "deepseek"),
    ("bigscience rail license", "bigscience-bloom-rail-1.0"),
    ("bigscience openrail-m license", "bigscience-openrail-m"),
    ("creativeml open rail-m", "creativeml-openrail-m"),
    ("bigcode open rail-m", "bigcode-openrail-m"),
    ("attribution-noncommercial-sharealike 4.0 international", "cc-by-nc-sa-4.0"),
    ("attribution-noncommercial-noderivatives 4.0 international", "cc-by-nc-nd-4.0"),
    ("attribution-noncommercial 4.0 international", "cc-by-nc-4.0"),
    ("attribution-noderivatives 4.0 international", "cc-by-nd-4.0"),
    ("attribution-sharealike 4.0 international", "cc-by-sa-4.0"),
    ("attribution 4.0 international", "cc-by-4.0"),
    ("cc0 1.0 universal", "cc0-1.0"),
    ("community data license agreement - permissive - version 2.0", "cdla-permissive-2.0"),
    ("gnu affero general public license version 3", "agpl-3.0"),
    ("gnu lesser general public license version 3", "lgpl-3.0"),
    ("gnu lesser general public license version 2.1", "lgpl-2.1"),
    ("gnu general public license version 3", "gpl-3.0"),
    ("gnu general public license version 2", "gpl-2.0"),
    ("mozilla public license version 2.0", "mpl-2.0"),
    ("apache license version 2.0", "apache-2.0"),
    ("boost software license - version 1.0", "bsl-1.0"),
    ("this is free and unencumbered software released into the public domain", "unlicense"),
    ("permission is hereby granted, free of charge", "mit"),
    ("permission to use, copy, modify, and/or distribute this software for any purpose", "isc"),
]


def from_text(text: str) -> License | None:
    """The license a LICENSE file's text is, by its distinctive phrases."""
    flat = " ".join(text.lower().split())
    for phrase, key in _TEXTS:
        if phrase in flat:
            return LICENSES[key]
    if "redistribution and use in source and binary forms" in flat:
        return LICENSES["bsd-3-clause" if "neither the name" in flat else "bsd-2-clause"]
    return None


def unrecognised(name: str) -> License:
    """A license named by a source but not recognised: class unknown, kept under its name."""
    key = canonical(name)
    ref = "LicenseRef-" + (re.sub(r"[^A-Za-z0-9.-]+", "-", key).strip("-") or "unknown")
    return License(key, ref, UNKNOWN, name.strip())


NO_LICENSE = License("unknown", "NOASSERTION", UNKNOWN, "no license declared")
