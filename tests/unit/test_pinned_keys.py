"""Which public keys online checks trust: those pinned by configuration and the
signer's own, never the database's (runtime.pinned_keys)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from chalicelib import runtime
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import ConfigurationError, Settings, settings
from chalicelib.domain.closing import key_id_for, signature_problem

RETIRED = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32).public_key().public_bytes_raw().hex()


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    import os

    for name in list(os.environ):
        if name.upper().startswith("EINVOICE_"):
            monkeypatch.delenv(name)
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    runtime.pinned_keys.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    settings.cache_clear()
    runtime.closing_signer.cache_clear()
    runtime.pinned_keys.cache_clear()


@pytest.mark.parametrize("value", ["abc", RETIRED[:-2], RETIRED + "00", "zz" * 32,
                                   f"{RETIRED},{RETIRED.upper()}"])
def test_a_pinned_key_must_be_a_raw_ed25519_key_listed_once(value: str) -> None:
    with pytest.raises(ConfigurationError, match="closing_public_keys") as refused:
        Settings.from_environment({"EINVOICE_CLOSING_PUBLIC_KEYS": value})
    assert value not in str(refused.value)


def test_the_signers_own_key_is_pinned_with_the_retired_ones(
        fresh: pytest.MonkeyPatch, tmp_path: Path) -> None:
    LocalSigningKey.create(tmp_path / "k.pem")
    signer = LocalSigningKey(tmp_path / "k.pem")
    fresh.setenv("EINVOICE_CLOSING_KEY_FILE", str(tmp_path / "k.pem"))
    fresh.setenv("EINVOICE_CLOSING_PUBLIC_KEYS", f" {RETIRED.upper()} ")
    retired = bytes.fromhex(RETIRED)
    assert dict(runtime.pinned_keys()) == {signer.key_id: signer.public_key,
                                           key_id_for(retired): retired}


def test_without_a_signer_only_the_configured_keys_are_pinned(
        fresh: pytest.MonkeyPatch) -> None:
    assert dict(runtime.pinned_keys()) == {}
    runtime.pinned_keys.cache_clear()
    settings.cache_clear()
    fresh.setenv("EINVOICE_CLOSING_PUBLIC_KEYS", RETIRED)
    assert list(runtime.pinned_keys()) == [key_id_for(bytes.fromhex(RETIRED))]


def test_an_unpinned_key_is_named_whatever_its_signature(tmp_path: Path) -> None:
    LocalSigningKey.create(tmp_path / "k.pem")
    signer = LocalSigningKey(tmp_path / "k.pem")
    signature = signer.sign(b"text")
    pinned = {signer.key_id: signer.public_key}
    assert signature_problem(pinned, signer.key_id, signature, "text") is None
    assert signature_problem({}, signer.key_id, signature, "text") == "key_unpinned"
    assert signature_problem(pinned, signer.key_id, bytes(64), "text") == "signature"
