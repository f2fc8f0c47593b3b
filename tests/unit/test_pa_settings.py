"""The PA settings: https only off loopback, all the credentials or none, the
client secret never shown."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.config import ConfigurationError, Settings, secret_settings

PA: dict[str, Any] = {"pa_base_url": "https://pa.example.fr/flow-service/",
      "pa_token_url": "https://pa.example.fr/oauth2/token",
      "pa_client_id": "einvoice", "pa_client_secret": "the-client-secret"}


def test_a_complete_pa_is_read_without_its_trailing_slash() -> None:
    s = Settings(**PA)
    assert s.pa_base_url == "https://pa.example.fr/flow-service"
    assert "the-client-secret" not in repr(s)
    assert "pa_client_secret" in secret_settings()


def test_no_pa_at_all_is_the_default() -> None:
    assert Settings().pa_base_url is None


@pytest.mark.parametrize("missing", ["pa_token_url", "pa_client_id", "pa_client_secret"])
def test_a_pa_without_its_credentials_is_refused(missing: str) -> None:
    values: dict[str, Any] = {k: v for k, v in PA.items() if k != missing}
    with pytest.raises(ConfigurationError, match="pa_base_url needs pa_token_url"):
        Settings(**values)


def test_credentials_without_a_pa_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="need pa_base_url"):
        Settings(pa_client_id="einvoice")


@pytest.mark.parametrize("url", ["http://pa.example.fr/flow-service",
                                 "https://user:pw@pa.example.fr/flow-service",
                                 "https://pa.example.fr/flow-service?x=1", "ftp://pa.example.fr"])
def test_a_pa_url_must_be_https_without_credentials(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"pa_base_url \(EINVOICE_PA_BASE_URL\)") as e:
        Settings(**{**PA, "pa_base_url": url})
    assert "user:pw" not in str(e.value)


def test_plain_http_is_allowed_on_loopback_only() -> None:
    s = Settings(**{**PA, "pa_base_url": "http://127.0.0.1:8123/flow-service",
                    "pa_token_url": "http://localhost:8123/oauth2/token"})
    assert s.pa_token_url == "http://localhost:8123/oauth2/token"


def test_the_composition_root_builds_the_pa_client_from_the_settings_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import runtime
    from chalicelib.adapters.pa import FlowServiceClient

    runtime.pa_client.cache_clear()
    monkeypatch.setattr(runtime, "settings", lambda: Settings())
    with pytest.raises(RuntimeError, match="no PA is configured"):
        runtime.pa_client()
    monkeypatch.setattr(runtime, "settings", lambda: Settings(**PA))
    try:
        assert isinstance(runtime.pa_client(), FlowServiceClient)
    finally:
        runtime.pa_client.cache_clear()
