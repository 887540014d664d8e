"""The Keyring a Context holds: the trust store is read without writing, and parsed once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from conftest import Result
from cryptography.hazmat.primitives.asymmetric import ec

from hubd.context import Context
from hubd.trust.keys import NODE, keyring, node_key, trusted_signers
from hubd.trust.oms import public_pem

Hubd = Callable[..., Result]


def test_listing_the_trust_store_of_a_fresh_home_writes_no_key(hubd: Hubd, home: Path) -> None:
    listed = hubd("trust", "ls", "--json")
    assert listed.code == 0, listed.err
    assert json.loads(listed.out)["signers"] == []
    assert not (home / "keys").exists()


def test_the_node_joins_the_trust_store_once_it_has_a_key(ctx: Context) -> None:
    assert trusted_signers(ctx) == []
    key = node_key(ctx)
    names = [s.name for s in trusted_signers(ctx)]
    assert names == [NODE] and trusted_signers(ctx)[0].key == key.public_key()


def test_one_keyring_per_context_parsing_each_file_once(ctx: Context, tmp_path: Path) -> None:
    assert keyring(ctx) is keyring(ctx)
    assert keyring(replace(ctx, settings=ctx.settings.model_copy())) is not keyring(ctx)
    node_key(ctx)
    first, again = trusted_signers(ctx), trusted_signers(ctx)
    assert first[0] is again[0]  # not parsed again
    pem = tmp_path / "alice.pem"
    pem.write_bytes(public_pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    (ctx.settings.home / "trust").mkdir()
    (ctx.settings.home / "trust" / "alice.pem").write_bytes(pem.read_bytes())
    assert [s.name for s in trusted_signers(ctx)] == [NODE, "alice"]  # a change is seen
