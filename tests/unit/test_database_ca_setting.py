"""The database CA in pieces: Scaleway caps each environment value at 1000
characters, so the instance certificate arrives as DB_CA_PEM_1, _2, ..."""

from __future__ import annotations

import os

import pytest

from chalicelib.config import ConfigurationError, Settings

PEM = ("-----BEGIN CERTIFICATE-----\n" + "QUJD" * 400 + "\n-----END CERTIFICATE-----\n")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("EINVOICE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("EINVOICE_DB_TLS", "true")


def _pieces(monkeypatch: pytest.MonkeyPatch, text: str, size: int = 900) -> int:
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    for number, chunk in enumerate(chunks, start=1):
        monkeypatch.setenv(f"EINVOICE_DB_CA_PEM_{number}", chunk)
    return len(chunks)


def test_pieces_are_joined_in_numeric_order(monkeypatch: pytest.MonkeyPatch) -> None:
    count = _pieces(monkeypatch, PEM, size=150)
    assert count > 10  # DB_CA_PEM_10 sorts before _2 as text: order must be numeric
    assert Settings.from_environment().db_ca_pem == PEM


def test_a_missing_piece_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _pieces(monkeypatch, PEM, size=150)
    monkeypatch.delenv("EINVOICE_DB_CA_PEM_2")
    with pytest.raises(ConfigurationError, match="no gap"):
        Settings.from_environment()


def test_pieces_and_the_whole_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _pieces(monkeypatch, PEM)
    monkeypatch.setenv("EINVOICE_DB_CA_PEM", PEM)
    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_environment()


def test_pieces_are_checked_as_the_whole_is(monkeypatch: pytest.MonkeyPatch) -> None:
    _pieces(monkeypatch, "not a certificate at all")
    with pytest.raises(ConfigurationError, match="PEM certificates"):
        Settings.from_environment()
