"""CORS: only the configured frontend origin, with credentials; none by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config import ConfigurationError, Settings
from devstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: the app reads its CORS origin once, at import.
# The preflight goes through Chalice's local gateway (what `bin/run` serves;
# on AWS, API Gateway answers it from the same CORSConfig).
PROBE = """
import json
from chalice.config import Config
from chalice.local import LocalGateway
import app
gateway = LocalGateway(app.app, Config())
pre = gateway.handle_request("OPTIONS", "/me", {
    "origin": "https://app.example.fr", "access-control-request-method": "GET",
    "access-control-request-headers": "X-CSRF-Token"}, b"")
get = gateway.handle_request("GET", "/health", {"origin": "https://evil.example"}, b"")
print(json.dumps({"preflight": [pre["statusCode"], pre["headers"]],
                  "get": [get["statusCode"], get["headers"]]}))
"""


def test_no_cross_origin_access_unless_configured(client: Any) -> None:
    response = client.get("/health", headers={"Origin": "https://evil.example"})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_only_the_configured_origin_is_allowed(stack: LocalStack) -> None:
    env = {**os.environ, "EINVOICE_FRONTEND_ORIGIN": "https://app.example.fr"}
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    status, headers = seen["preflight"]
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.fr"
    assert headers["Access-Control-Allow-Credentials"] == "true"
    assert "X-CSRF-Token" in headers["Access-Control-Allow-Headers"].split(",")
    assert "GET" in headers["Access-Control-Allow-Methods"]
    status, headers = seen["get"]
    # Another origin is told the one allowed origin: its browser refuses to
    # hand it the answer. Never a wildcard, never the caller's origin echoed.
    assert status == 200
    assert headers["Access-Control-Allow-Origin"] == "https://app.example.fr"
    assert "X-Request-Id" in headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("origin", [
    "*", "https://*.example.fr", "https://app.example.fr/", "https://app.example.fr/x",
    "http://app.example.fr", "https://a.example.fr,https://b.example.fr", "null",
    "https://App.example.fr", "https://user@app.example.fr", "app.example.fr"])
def test_settings_refuse_anything_but_one_exact_origin(origin: str) -> None:
    with pytest.raises(ConfigurationError, match="frontend_origin"):
        Settings(frontend_origin=origin)


@pytest.mark.parametrize("origin", [
    "https://app.example.fr", "https://app.example.fr:8443", "http://localhost:5173"])
def test_settings_accept_an_exact_origin(origin: str) -> None:
    assert Settings(frontend_origin=origin).frontend_origin == origin


@pytest.mark.parametrize("settings", [
    {"signup_confirm_url": "http://app.example.fr/signup/confirm"},
    {"signup_confirm_url": "ftp://app.example.fr/"},
    {"smtp_host": "smtp.provider.example", "smtp_starttls": False},
])
def test_settings_refuse_mail_in_clear_off_this_machine(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**settings)


def test_settings_allow_clear_mail_on_loopback_only() -> None:
    local = Settings(smtp_host="127.0.0.1", smtp_starttls=False,
                     signup_confirm_url="http://localhost:8000/signup/confirm")
    assert local.smtp_host == "127.0.0.1"
