"""The OMS signature a repo ships itself: the file's name and the verdict recorded on it.

Apart from trust.oms so that what names the file (the mirror's file selection, an upload) and
what reports the verdict (``hubd mirror --json``) need not import the cryptography that checks it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import StrictStr

from ..validation import Closed

SIGNATURE_FILE = "model.sig"


class UpstreamSignature(Closed):
    """The verdict on a model.sig the source repo shipped."""

    status: Literal["verified", "untrusted"]
    signer: StrictStr
    key: StrictStr
