"""Typed errors raised at hubd's boundaries.

Every failure a user can cause or meet is a :class:`HubdError`; the CLI maps each class to
``hubd: error: <message>`` and its ``exit_code``, and the HTTP server to a JSON body with its
``http_status`` and ``code`` (sent as ``X-Error-Code``). ``code`` is the class's name unless the
class sets its own (only ``OfflineError``: ``Offline``); codes are a wire contract, never rename
a class without keeping its old code. Anything else reaching the top is a bug.

A blank exit or status column means the parent's (``tests/test_errors.py`` checks this tree
against the classes)::

    HubdError                      exit 1   500
    ├── ConfigError                exit 2   500   bad hubd.toml, HUBD_* value or flag
    │   └── InvalidPolicy                         a policy file hubd cannot use as written
    ├── InvalidReference           exit 2   400   bad repo id, revision or glob
    ├── InvalidRequest             exit 2   400   a request that cannot be served as asked
    │   ├── RangeNotSatisfiable             416   a Range header this server does not honour
    │   └── Conflict                        409   a repo or ref that exists, a stale parentCommit
    ├── NotFound                   exit 3   404
    │   ├── RepoNotFound
    │   ├── RevisionNotFound
    │   └── EntryNotFound
    ├── AccessDenied               exit 4   401
    │   ├── Forbidden                       403   a token without the scope the call needs
    │   └── GatedRepo                             gated upstream repo, no (valid) token
    ├── UpstreamError              exit 5   502   endpoint unreachable, stalled, 5xx, bad answer
    │   ├── OfflineError                          HF_HUB_OFFLINE=1, the answer needs the network
    │   ├── BlobUnavailable                 503   a listed blob no reachable node holds
    │   └── UpstreamBusy                    429   the upstream rate-limits (its HTTP 429)
    ├── IntegrityError             exit 6   502
    │   ├── HashMismatch                          bytes do not match the declared digest
    │   ├── SizeMismatch                          byte count does not match the declared size
    │   ├── SignatureInvalid                      a signature that does not verify or match
    │   ├── UntrustedSigner                       signed, but by no key in the trust store
    │   └── ReplayedRevision                      a ref moved back, a commit with other files
    ├── UnsafePath                 exit 7   400   a file name with '..', absolute, '\\' or NUL
    ├── StoreError                 exit 8   507   disk full, permissions, corrupt store
    │   └── StoreUnavailable                503   the object store does not answer (backend s3)
    ├── PolicyViolation            exit 9   403   the policy denies mirroring this repo
    ├── VerificationFailed         exit 1   500   `hubd verify` found damaged blobs
    ├── NotCompliant               exit 1   500   `hubd audit` found policy violations
    ├── RuntimeCrashed             exit 10  500   llama.cpp died (the worker process, not hubd)
    └── InvalidModelFile           exit 11  422   a GGUF or LoRA llama.cpp must not load
"""

from __future__ import annotations

from typing import Any


class HubdError(Exception):
    """Base of every error hubd reports to a user."""

    exit_code: int = 1
    http_status: int = 500
    code: str = "HubdError"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "code" not in cls.__dict__:
            cls.code = cls.__name__

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class ConfigError(HubdError):
    exit_code = 2


class InvalidPolicy(ConfigError):
    """A policy file hubd cannot use as written."""


class InvalidReference(HubdError):
    exit_code = 2
    http_status = 400


class InvalidRequest(HubdError):
    exit_code = 2
    http_status = 400


class RangeNotSatisfiable(InvalidRequest):
    """A Range header this server will not honour: 416 with the size it can (RFC 9110 15.5.17).

    Multiple ranges and malformed ones are refused rather than ignored, so a client never takes
    a whole body for the part it asked for.
    """

    http_status = 416

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class Conflict(InvalidRequest):
    """A repo, branch or tag that already exists, or a commit whose parent is not the head.

    HTTP 409, as the Hub answers: huggingface_hub's ``exist_ok`` relies on it.
    """

    http_status = 409


class NotFound(HubdError):
    exit_code = 3
    http_status = 404


class RepoNotFound(NotFound):
    """No such repo (here or at the source)."""


class RevisionNotFound(NotFound):
    """The repo exists; the revision (branch, tag or commit) does not."""


class EntryNotFound(NotFound):
    """The revision exists; the file does not."""


class AccessDenied(HubdError):
    exit_code = 4
    http_status = 401


class Forbidden(AccessDenied):
    """A token without the scope the call needs."""

    http_status = 403


class GatedRepo(AccessDenied):
    """A gated upstream repo and no (valid) token for it."""


class UpstreamError(HubdError):
    exit_code = 5
    http_status = 502


class OfflineError(UpstreamError):
    """HF_HUB_OFFLINE=1 and the answer needs the network."""

    code = "Offline"  # the wire code predates the class name: keep it


class BlobUnavailable(UpstreamError):
    """The catalog lists a file whose blob neither this node nor any reachable node holds.

    HTTP 503 (``X-Error-Code: BlobUnavailable``): the revision exists, its bytes are only out
    of reach until a node that holds them is back.
    """

    http_status = 503


class UpstreamBusy(UpstreamError):
    """The upstream answered 429 (rate-limited); the pull-through passes it on as the Hub would,
    so clients back off rather than take hubd for broken."""

    http_status = 429


class IntegrityError(HubdError):
    exit_code = 6
    http_status = 502


class HashMismatch(IntegrityError):
    """Bytes that do not match the declared digest."""


class SizeMismatch(IntegrityError):
    """A byte count that does not match the declared size."""


class SignatureInvalid(IntegrityError):
    """A signature that does not verify, or does not match the files."""


class UntrustedSigner(IntegrityError):
    """Signed, but by no key in the trust store."""


class ReplayedRevision(IntegrityError):
    """A ref moved back to an older commit, or a commit whose files differ from ours."""


class UnsafePath(HubdError):
    exit_code = 7
    http_status = 400


class StoreError(HubdError):
    exit_code = 8
    http_status = 507


class StoreUnavailable(StoreError):
    """The S3-compatible object store is unreachable or failing: nothing was lost; retry."""

    http_status = 503


class PolicyViolation(HubdError):
    exit_code = 9
    http_status = 403


class VerificationFailed(HubdError):
    """`hubd verify` found damaged blobs."""


class NotCompliant(HubdError):
    """`hubd audit` found policy violations."""


class RuntimeCrashed(HubdError):
    exit_code = 10


class InvalidModelFile(HubdError):
    exit_code = 11
    http_status = 422
