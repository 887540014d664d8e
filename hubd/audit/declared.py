"""What a revision's own sources say its license is, and whether they agree.

Sources: the card's ``license``, ``license_name`` and ``license_link``, LICENSE files at the repo
root (and the file ``license_link`` names) and each GGUF file's ``general.license``. When
recognised sources disagree the most restrictive wins and the disagreement is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .facts import FileRow, RevisionRow
from .licenses import NO_LICENSE, PLACEHOLDERS, License, canonical, from_link, from_text, lookup
from .licenses import unrecognised as unrecognised_license
from .scan import Scanner

LICENSE_FILE = re.compile(r"^(?:licen[cs]e|copying)(?:[-_.][\w.-]*)?$", re.IGNORECASE)
TEXT_LIMIT = 64 * 1024  # license names and their distinctive phrases come first


@dataclass(frozen=True)
class Declaration:
    source: str  # card.license | card.license_name | card.license_link | file:PATH | gguf:PATH
    value: str
    license: License | None  # None: the source names no license hubd recognises

    def to_json(self) -> dict[str, Any]:
        lic = self.license
        return {
            "source": self.source,
            "value": self.value,
            "license": lic.key if lic else None,
            "spdx": lic.spdx if lic else None,
            "class": str(lic.license_class) if lic else None,
        }


@dataclass(frozen=True)
class Declared:
    license: License
    declarations: tuple[Declaration, ...]
    conflict: str | None
    reason: str


def summarise(declarations: list[Declaration]) -> Declared:
    """One license for the revision's own terms, with the reason and any disagreement."""
    recognised = [(d, d.license) for d in declarations if d.license is not None]
    if recognised:
        chosen, chosen_license = max(recognised, key=lambda pair: pair[1].license_class.rank)
        keys = list(dict.fromkeys(lic.key for _, lic in recognised))
        conflict = None
        if len(keys) > 1:
            conflict = "sources disagree: " + "; ".join(
                f"{d.source} says {lic.key}" for d, lic in recognised
            )
        reason = f"{chosen.source} declares {chosen_license.key}"
        if conflict:
            reason += f" (the most restrictive of {', '.join(keys)})"
        return Declared(chosen_license, tuple(declarations), conflict, reason)
    named = [
        d
        for d in declarations
        if d.source in ("card.license", "card.license_name")
        and canonical(d.value) not in PLACEHOLDERS
    ]
    if named:
        license = unrecognised_license(named[-1].value)
        reason = f"{named[-1].source} {named[-1].value!r} is not a license hubd recognises"
        return Declared(license, tuple(declarations), None, reason)
    said = [d.value for d in declarations if d.source == "card.license"]
    if said:
        reason = f"the card says license: {said[0]}" + (
            " without a recognised license_name" if canonical(said[0]) == "other" else ""
        )
    else:
        reason = "no source declares a license"
    return Declared(NO_LICENSE, tuple(declarations), None, reason)


def card_declarations(
    license: str | None, license_name: str | None, license_link: str | None
) -> list[Declaration]:
    result = [
        Declaration("card.license", value, lookup(value))
        for value in (v.strip() for v in (license or "").split(","))
        if value
    ]
    if license_name:
        result.append(Declaration("card.license_name", license_name, lookup(license_name)))
    if license_link and "://" in license_link:
        result.append(Declaration("card.license_link", license_link, from_link(license_link)))
    return result


class DeclarationReader:
    """Reads each revision's sources (card, LICENSE files, GGUF metadata) from the store once."""

    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner
        self._texts: dict[str, str | None] = {}
        self._done: dict[tuple[str, str], Declared] = {}

    def __call__(self, row: RevisionRow) -> Declared:
        key = (row.repo_id, row.commit)
        if key not in self._done:
            self._done[key] = summarise(self._declarations(row))
        return self._done[key]

    def _declarations(self, row: RevisionRow) -> list[Declaration]:
        card = row.card
        found = card_declarations(
            card.license if card else None,
            card.license_name if card else None,
            card.license_link if card else None,
        )
        linked = (card.license_link or "").strip().lstrip("./") if card else ""
        for item in row.files:
            if item.path == linked or LICENSE_FILE.match(item.path):
                text = self._text(item)
                if text is not None:
                    lic = from_text(text)
                    found.append(Declaration(f"file:{item.path}", _first_line(text), lic))
            elif item.path.lower().endswith(".gguf"):
                declared = self.scanner.blob(item).gguf_license
                if declared:
                    found.append(Declaration(f"gguf:{item.path}", declared, lookup(declared)))
        return found

    def _text(self, item: FileRow) -> str | None:
        if item.sha256 not in self._texts:
            try:
                with self.scanner.store.open_read(item.sha256) as f:
                    self._texts[item.sha256] = f.read(TEXT_LIMIT).decode("utf-8", "replace")
            except OSError:
                self._texts[item.sha256] = None
        return self._texts[item.sha256]


def _first_line(text: str) -> str:
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return line[:120]
