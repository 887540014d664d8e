"""Typed errors raised at hubd's boundaries.

Every failure a user can cause or meet is a :class:`HubdError`; the CLI maps each class to
``hubd: error: <message>`` and its ``exit_code``, and the HTTP server to a JSON body with its
``http_status``. Anything else reaching the top is a bug.

::

    HubdError                      exit 1   500
    ├── ConfigError                exit 2   500   bad hubd.toml, HUBD_* value or flag
    │   └── InvalidPolicy                         a policy file hubd cannot use as written
    ├── InvalidReference           exit 2   400   bad repo id, revision or glob
    ├── InvalidRequest             exit 2   400   a request that cannot be served as asked
    │   └── RangeNotSatisfiable        416        a Range header this server does not honour
    ├── NotFound                   exit 3   404
    │   ├── RepoNotFound
    │   ├── RevisionNotFound
    │   └── EntryNotFound
    ├── AccessDenied               exit 4   401
    │   ├── Forbidden                  403        a token without the scope the call needs
    │   └── GatedRepo                             gated upstream repo, no (valid) token
    ├── UpstreamError              exit 5   502   endpoint unreachable, stalled, 5xx, bad answer
    │   └── OfflineError                          HF_HUB_OFFLINE=1 and the answer needs the network
    ├── IntegrityError             exit 6   502
    │   ├── HashMismatch                          bytes do not match the declared digest
    │   ├── SizeMismatch                          byte count does not match the declared size
    │   ├── SignatureInvalid                      a signature that does not verify or match
    │   └── UntrustedSigner                       signed, but by no key in the trust store
    ├── UnsafePath                 exit 7   400   a file name with '..', absolute, '\\' or NUL
    ├── StoreError                 exit 8   507   disk full, permissions, corrupt store
    ├── PolicyViolation            exit 9   403   the policy denies mirroring this repo
    ├── VerificationFailed         exit 1   500   `hubd verify` found damaged blobs
    ├── NotCompliant               exit 1   500   `hubd audit` found policy violations
    ├── RuntimeCrashed             exit 10  500   llama.cpp died (the worker process, not hubd)
    └── InvalidModelFile           exit 11  422   a GGUF or LoRA llama.cpp must not load
"""

from __future__ import annotations


class HubdError(Exception):
    """Base of every error hubd reports to a user."""

    exit_code: int = 1
    http_status: int = 500
    code: str = "HubdError"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class ConfigError(HubdError):
    exit_code = 2
    code = "ConfigError"


class InvalidPolicy(ConfigError):
    code = "InvalidPolicy"


class InvalidReference(HubdError):
    exit_code = 2
    http_status = 400
    code = "InvalidReference"


class InvalidRequest(HubdError):
    exit_code = 2
    http_status = 400
    code = "InvalidRequest"


class RangeNotSatisfiable(InvalidRequest):
    """A Range header this server will not honour: 416 with the size it can (RFC 9110 15.5.17).

    Multiple ranges and malformed ones are refused rather than ignored, so a client never takes
    a whole body for the part it asked for.
    """

    http_status = 416
    code = "RangeNotSatisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class NotFound(HubdError):
    exit_code = 3
    http_status = 404
    code = "NotFound"


class RepoNotFound(NotFound):
    code = "RepoNotFound"


class RevisionNotFound(NotFound):
    code = "RevisionNotFound"


class EntryNotFound(NotFound):
    code = "EntryNotFound"


class AccessDenied(HubdError):
    exit_code = 4
    http_status = 401
    code = "AccessDenied"


class Forbidden(AccessDenied):
    http_status = 403
    code = "Forbidden"


class GatedRepo(AccessDenied):
    code = "GatedRepo"


class UpstreamError(HubdError):
    exit_code = 5
    http_status = 502
    code = "UpstreamError"


class OfflineError(UpstreamError):
    code = "Offline"


class BlobUnavailable(UpstreamError):
    """The catalog lists a file whose blob neither this node nor any reachable node holds.

    HTTP 503 (``X-Error-Code: BlobUnavailable``): the revision exists, its bytes are only out
    of reach until a node that holds them is back.
    """

    http_status = 503
    code = "BlobUnavailable"


class IntegrityError(HubdError):
    exit_code = 6
    http_status = 502
    code = "IntegrityError"


class HashMismatch(IntegrityError):
    code = "HashMismatch"


class SizeMismatch(IntegrityError):
    code = "SizeMismatch"


class SignatureInvalid(IntegrityError):
    code = "SignatureInvalid"


class UntrustedSigner(IntegrityError):
    code = "UntrustedSigner"


class ReplayedRevision(IntegrityError):
    """A ref moved back to an older commit, or a commit whose files differ from ours."""

    code = "ReplayedRevision"


class UnsafePath(HubdError):
    exit_code = 7
    http_status = 400
    code = "UnsafePath"


class StoreError(HubdError):
    exit_code = 8
    http_status = 507
    code = "StoreError"


class PolicyViolation(HubdError):
    exit_code = 9
    http_status = 403
    code = "PolicyViolation"


class VerificationFailed(HubdError):
    code = "VerificationFailed"


class NotCompliant(HubdError):
    code = "NotCompliant"


class RuntimeCrashed(HubdError):
    exit_code = 10
    code = "RuntimeCrashed"


class InvalidModelFile(HubdError):
    exit_code = 11
    http_status = 422
    code = "InvalidModelFile"
