"""Key material on disk: the node key, the trust store and the signatures kept in the store.

::

    $HUBD_HOME/keys/node.key      this node's ECDSA P-256 private key (PEM, 0600), made when it
                                  first signs
    $HUBD_HOME/keys/node.pub      its public key
    $HUBD_HOME/trust/<name>.pem   trusted signers: a public key, or an organisation CA
                                  certificate (the node's own key is "node")
    store/signatures/<org>/<name>/<commit>/<key-hint>.sig   OMS bundles, one per signer
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ..context import Context
from ..errors import ConfigError, SignatureInvalid, StoreError
from ..store import temp_path
from . import certificates
from .oms import check_key, key_hint, public_pem

NODE = "node"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Signer:
    """A trusted name and the public key its signatures are checked with.

    ``ca`` is set for an organisation CA: the trust store's entry holds the CA's own key, and a
    verified certificate bundle's signer is the CA's name with the leaf certificate's key.
    """

    name: str
    public_key: CertificatePublicKeyTypes
    path: Path
    ca: x509.Certificate | None = None

    @property
    def key(self) -> ec.EllipticCurvePublicKey:
        """The ECDSA key that signs for this name (a CA with another kind of key signs none)."""
        if not isinstance(self.public_key, ec.EllipticCurvePublicKey):
            raise SignatureInvalid(
                f"{self.name} is a CA with a {self.algorithm} key: it signs certificates only"
            )
        return self.public_key

    @cached_property
    def hint(self) -> str:
        """The key's OMS hint, computed once: audits compare it for every signature."""
        return key_hint(self.public_key)

    @property
    def kind(self) -> str:
        return "key" if self.ca is None else "ca"

    @property
    def algorithm(self) -> str:
        """e.g. secp256r1, rsa-4096, ed25519."""
        key = self.public_key
        if isinstance(key, ec.EllipticCurvePublicKey):
            return key.curve.name
        if isinstance(key, rsa.RSAPublicKey):
            return f"rsa-{key.key_size}"
        return type(key).__name__.removesuffix("PublicKey").lower()


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write-then-rename, so a reader never sees half a key or half a signature."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


class Keyring:
    """The node key and the trust store of one home, read once and re-read only when changed.

    Held by the :class:`Context` (:func:`keyring`), so an operation that checks many signatures
    parses each PEM once. Reading never writes: the node key is made only when something is to
    be signed (:meth:`node_key`); until then the trust store has no "node" entry.
    """

    def __init__(self, home: Path) -> None:
        self.keys = home / "keys"
        self.trust = home / "trust"
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._signers: tuple[tuple[tuple[str, int, int], ...], list[Signer]] | None = None
        self._lock = threading.Lock()

    def node_key(self) -> ec.EllipticCurvePrivateKey:
        """This node's signing key, created (P-256) on first use; node.pub is derived from it.

        The key is published with ``os.link``, which fails if another process got there first:
        two mirrors starting on a fresh home agree on one key.
        """
        with self._lock:
            if self._key is None:
                self._key = self._load_or_create()
            return self._key

    def _load_or_create(self) -> ec.EllipticCurvePrivateKey:
        path = self.keys / "node.key"
        if not path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            tmp = temp_path(path.with_name("node.key.new"))
            write_atomic(tmp, pem, 0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
            finally:
                tmp.unlink(missing_ok=True)
        key = load_private_key(path)
        public = path.with_name("node.pub")
        if not public.exists():
            write_atomic(public, public_pem(key.public_key()))
        self._signers = None  # the node is a signer now
        return key

    def signers(self) -> list[Signer]:
        """Every trusted signer: the node's key (as "node", once it exists) and
        trust/<name>.pem, by name. Parsed again only when a file there changed."""
        node_pub, node_key = self.keys / "node.pub", self.keys / "node.key"
        paths = [p for p in (node_pub, node_key) if p.exists()][:1]
        paths += sorted(self.trust.glob("*.pem")) if self.trust.exists() else []
        seen = tuple(_stamp(p) for p in paths)
        with self._lock:
            if self._signers is not None and self._signers[0] == seen:
                return list(self._signers[1])
        signers = []
        for path in paths:
            if path == node_key:
                signers.append(Signer(NODE, load_private_key(path).public_key(), node_pub))
            elif path == node_pub:
                signers.append(Signer(NODE, load_public_key(path), path))
            else:
                signers.append(load_signer(path.stem, path))
        with self._lock:
            self._signers = (seen, signers)
        return list(signers)


def _stamp(path: Path) -> tuple[str, int, int]:
    try:
        status = path.stat()
    except OSError:
        return (str(path), -1, -1)
    return (str(path), status.st_mtime_ns, status.st_size)


def keyring(ctx: Context) -> Keyring:
    """The Keyring of ``ctx``'s home, one per Context."""
    return ctx.held(Keyring, lambda: Keyring(ctx.settings.home))


def node_key(ctx: Context) -> ec.EllipticCurvePrivateKey:
    """This node's signing key (made on first use)."""
    return keyring(ctx).node_key()


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    check_key(key, str(path))
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # noqa: S101 - check_key admits only EC keys
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from None
    return check_key(key, str(path))


def trust_dir(ctx: Context) -> Path:
    return ctx.settings.home / "trust"


def load_signer(name: str, path: Path) -> Signer:
    """A trust store entry: a CA certificate PEM, else a public key PEM."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    if certificates.PEM_MARKER in data:
        ca = certificates.load_ca(data, str(path))
        return Signer(name, ca.public_key(), path, ca)
    return Signer(name, load_public_key(path), path)


def trusted_signers(ctx: Context) -> list[Signer]:
    """Every trusted signer (:meth:`Keyring.signers`); never creates a key."""
    return keyring(ctx).signers()


def _pem(signer: Signer) -> bytes:
    if signer.ca is not None:
        return signer.ca.public_bytes(serialization.Encoding.PEM)
    return public_pem(signer.key)


def add_trusted(ctx: Context, name: str, pem_file: Path) -> Signer:
    """Trust the public key or CA certificate in ``pem_file`` as ``name`` (used in trust rules).

    A CA must be able to issue code-signing certificates and be valid now.
    """
    if not _NAME.match(name) or name == NODE:
        raise ConfigError(
            f"not a signer name: {name!r}",
            hint="letters, digits, '.', '_' and '-'; 'node' is this node's own key",
        )
    path = trust_dir(ctx) / f"{name}.pem"
    signer = load_signer(name, pem_file)
    if signer.ca is not None:
        problem = certificates.validity_problem(signer.ca, datetime.now(UTC))
        if problem:
            raise ConfigError(f"{pem_file}: CA {certificates.subject(signer.ca)} {problem}")
    pem = _pem(signer)
    if path.exists() and _pem(load_signer(name, path)) != pem:
        raise ConfigError(
            f"signer {name!r} is already trusted with another key or certificate", hint=str(path)
        )
    write_atomic(path, pem)
    return Signer(name, signer.public_key, path, signer.ca)


def signature_dir(ctx: Context, repo_id: str, commit: str) -> Path:
    return ctx.store.signature_dir(repo_id, commit)


def stored_signatures(ctx: Context, repo_id: str, commit: str) -> list[Path]:
    directory = signature_dir(ctx, repo_id, commit)
    return sorted(directory.glob("*.sig")) if directory.exists() else []
