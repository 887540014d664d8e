"""Key material on disk: the node key, the trust store and the signatures kept in the store.

::

    $HUBD_HOME/keys/node.key      this node's ECDSA P-256 private key (PEM, 0600), made on first use
    $HUBD_HOME/keys/node.pub      its public key
    $HUBD_HOME/trust/<name>.pem   public keys of trusted signers (the node's own is "node")
    store/signatures/<org>/<name>/<commit>/<key-hint>.sig   OMS bundles, one per signer
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..context import Context
from ..errors import ConfigError, StoreError
from .signing import check_key, key_hint, public_pem

NODE = "node"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Signer:
    name: str
    key: ec.EllipticCurvePublicKey
    path: Path

    @property
    def hint(self) -> str:
        return key_hint(self.key)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write-then-rename, so a reader never sees half a key or half a signature."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def node_key(ctx: Context) -> ec.EllipticCurvePrivateKey:
    """This node's signing key, created (P-256) on first use; node.pub is derived from it.

    The key is published with ``os.link``, which fails if another process got there first: two
    mirrors starting on a fresh home agree on one key.
    """
    path = ctx.settings.home / "keys" / "node.key"
    if not path.exists():
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".node.key.{os.getpid()}.tmp")
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
    return key


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    check_key(key, str(path))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from None
    return check_key(key, str(path))


def trust_dir(ctx: Context) -> Path:
    return ctx.settings.home / "trust"


def trusted_signers(ctx: Context) -> list[Signer]:
    """Every trusted key: the node's own (as "node") and trust/<name>.pem, by name."""
    node_pub = ctx.settings.home / "keys" / "node.pub"
    signers = [Signer(NODE, node_key(ctx).public_key(), node_pub)]
    directory = trust_dir(ctx)
    for path in sorted(directory.glob("*.pem")) if directory.exists() else []:
        signers.append(Signer(path.stem, load_public_key(path), path))
    return signers


def add_trusted(ctx: Context, name: str, pem_file: Path) -> Signer:
    """Trust the public key in ``pem_file`` under ``name`` (a name used in trust rules)."""
    if not _NAME.match(name) or name == NODE:
        raise ConfigError(
            f"not a signer name: {name!r}",
            hint="letters, digits, '.', '_' and '-'; 'node' is this node's own key",
        )
    key = load_public_key(pem_file)
    path = trust_dir(ctx) / f"{name}.pem"
    if path.exists() and key_hint(load_public_key(path)) != key_hint(key):
        raise ConfigError(f"signer {name!r} is already trusted with another key", hint=str(path))
    write_atomic(path, public_pem(key))
    return Signer(name, key, path)


def signature_dir(ctx: Context, repo_id: str, commit: str) -> Path:
    return ctx.store.signatures_dir / repo_id / commit


def stored_signatures(ctx: Context, repo_id: str, commit: str) -> list[Path]:
    directory = signature_dir(ctx, repo_id, commit)
    return sorted(directory.glob("*.sig")) if directory.exists() else []
