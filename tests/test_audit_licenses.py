"""License recognition: card ids and spellings, license_link URLs, LICENSE texts, SPDX ids."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from hubd.audit.declared import card_declarations, summarise
from hubd.audit.licenses import LICENSES, from_link, from_text, lookup


def spdx_list() -> set[str]:
    """The SPDX license list ids CycloneDX's schema accepts."""
    text = resources.files("cyclonedx.schema").joinpath("_res/spdx.SNAPSHOT.schema.json")
    return set(json.loads(text.read_text())["enum"])


def test_listed_ids_are_real_spdx_ids() -> None:
    listed = spdx_list()
    for lic in LICENSES.values():
        assert lic.spdx.startswith("LicenseRef-") or lic.spdx in listed, lic
        assert lic.spdx.startswith("LicenseRef-") or lookup(lic.spdx) == lic  # SPDX spellings too


@pytest.mark.parametrize(
    ("raw", "key", "license_class"),
    [
        ("Apache-2.0", "apache-2.0", "osi-open-source"),
        ("apache 2.0", "apache-2.0", "osi-open-source"),
        ("Llama-3.1", "llama3.1", "open-weight-restricted"),
        ("llama_3_2", "llama3.2", "open-weight-restricted"),
        ("meta-llama-3-community-license", "llama3", "open-weight-restricted"),
        ("Llama 2", "llama2", "open-weight-restricted"),
        ("llama4", "llama4", "open-weight-restricted"),
        ("gemma-terms-of-use", "gemma", "open-weight-restricted"),
        ("creativeml-openrail-m", "creativeml-openrail-m", "open-weight-restricted"),
        ("bigscience-something-new", "bigscience-something-new", "open-weight-restricted"),
        ("tongyi-qianwen", "qwen", "open-weight-restricted"),
        ("cc-by-nc-sa-2.5", "cc-by-nc-sa-2.5", "non-commercial"),
        ("cc-by-sa-4.0", "cc-by-sa-4.0", "open-content"),
        ("odc-by", "odc-by", "open-content"),
        (
            "fair-noncommercial-research-license",
            "fair-noncommercial-research-license",
            "non-commercial",
        ),
        ("cc", "cc", "unknown"),
    ],
)
def test_lookup(raw: str, key: str, license_class: str) -> None:
    found = lookup(raw)
    assert found is not None and (found.key, found.license_class) == (key, license_class)


@pytest.mark.parametrize("raw", ["other", "unknown", "", "acme-eula", "Proprietary"])
def test_not_a_known_license(raw: str) -> None:
    assert lookup(raw) is None


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("https://www.apache.org/licenses/LICENSE-2.0", "apache-2.0"),
        ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "cc-by-nc-sa-4.0"),
        ("https://creativecommons.org/publicdomain/zero/1.0/", "cc0-1.0"),
        ("https://ai.meta.com/llama/license/", "llama2"),
        ("https://llama.meta.com/llama3/license", "llama3"),
        (
            "https://github.com/meta-llama/llama-models/blob/main/models/llama3_3/LICENSE",
            "llama3.3",
        ),
        ("https://ai.google.dev/gemma/terms", "gemma"),
        ("https://opensource.org/licenses/MIT", "mit"),
        ("https://spdx.org/licenses/MPL-2.0.html", "mpl-2.0"),
    ],
)
def test_license_links(url: str, key: str) -> None:
    found = from_link(url)
    assert found is not None and found.key == key
    assert from_link("https://example.com/our-terms") is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("        Apache License\n        Version 2.0, January 2004", "apache-2.0"),
        (
            "LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nLlama 3.1 Version Release Date: July 23, 2024",
            "llama3.1",
        ),
        ("Gemma Terms of Use\n\nLast modified: February 21, 2024", "gemma"),
        ("Attribution-NonCommercial 4.0 International\n\n=====", "cc-by-nc-4.0"),
        ("GNU LESSER GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007", "lgpl-3.0"),
        (
            "Redistribution and use in source and binary forms ... Neither the name of",
            "bsd-3-clause",
        ),
        ("Redistribution and use in source and binary forms, with or without", "bsd-2-clause"),
    ],
)
def test_license_texts(text: str, key: str) -> None:
    found = from_text(text)
    assert found is not None and found.key == key


def test_sources_that_disagree_take_the_most_restrictive() -> None:
    declared = summarise(card_declarations("mit", None, "https://ai.google.dev/gemma/terms"))
    assert declared.license.key == "gemma"
    assert (
        declared.conflict == "sources disagree: card.license says mit; card.license_link says gemma"
    )
    assert "the most restrictive of mit, gemma" in declared.reason
    same = summarise(card_declarations("other", "llama3", "https://llama.meta.com/llama3/license"))
    assert same.license.key == "llama3" and same.conflict is None
