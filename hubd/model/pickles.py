"""Pickle-based weight files (.bin, .pt, .pth, .ckpt, .pkl): the Python globals they import.

Loading a pickle (``torch.load``, ``pickle.load``) calls whatever its globals name, ``os.system``
included. picklescan disassembles the stream, and the pickles inside PyTorch zip archives,
without executing anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")


@dataclass(frozen=True)
class PickleImport:
    module: str
    name: str
    dangerous: bool  # on picklescan's list of globals that execute code or touch the system


@dataclass(frozen=True)
class PickleScan:
    imports: tuple[PickleImport, ...]  # dangerous and unlisted globals; known-safe ones omitted
    parse_error: bool  # the stream could not be read to its end


def scan_pickle(path: Path) -> PickleScan:
    from picklescan.scanner import SafetyLevel, scan_file_path

    try:
        result = scan_file_path(str(path))
    except Exception:  # picklescan lets its parsers' errors through on hostile input
        return PickleScan((), True)
    imports = sorted(
        {
            PickleImport(g.module, g.name, g.safety == SafetyLevel.Dangerous)
            for g in result.globals
            if g.safety != SafetyLevel.Innocuous
        },
        key=lambda i: (not i.dangerous, i.module, i.name),
    )
    return PickleScan(tuple(imports), bool(result.scan_err))
