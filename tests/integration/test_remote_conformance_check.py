"""POST /invoices with the conformance check in its own function, reached over
HTTP as on Scaleway (EINVOICE_CONFORMANCE_CHECK=<url>): the invoice is issued
when the function answers, and when it cannot (wrong token, dead server) the
caller gets a 503 and nothing is issued, no number consumed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import runtime
from chalicelib.config import settings
from deploy import serve
from functions import conformance_check
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, get, issue, owner_with_key

TOKEN = "conformance-token-integration"


@pytest.fixture(scope="module")
def function_url() -> Iterator[str]:
    server = serve.serve(conformance_check.handle, 0, TOKEN, host="127.0.0.1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def remote_check(monkeypatch: pytest.MonkeyPatch, function_url: str) -> Iterator[None]:
    """The settings name the remote check; runtime builds the documents with it."""
    monkeypatch.setenv("EINVOICE_CONFORMANCE_CHECK", function_url)
    monkeypatch.setenv("EINVOICE_CONFORMANCE_CHECK_TOKEN", TOKEN)
    settings.cache_clear()
    runtime.invoice_documents.cache_clear()
    yield
    monkeypatch.undo()
    settings.cache_clear()
    runtime.invoice_documents.cache_clear()


def test_an_invoice_is_issued_through_the_remote_check(
        client: Any, frozen: FrozenClock, remote_check: None) -> None:
    from chalicelib.adapters.conformance import HttpConformanceCheck

    assert isinstance(runtime.conformance_check(), HttpConformanceCheck)
    _, key = owner_with_key(client, frozen, WRITE)
    created = issue(client, key["secret"], recent(), key="remote-1")
    assert created.status_code == 201, created.body
    assert created.json_body["invoice_number"] == "F-000001"


@pytest.mark.parametrize("breakage", ["wrong token", "dead server"])
def test_a_remote_check_that_cannot_answer_is_a_503_and_nothing_is_issued(
        client: Any, frozen: FrozenClock, remote_check: None, monkeypatch: pytest.MonkeyPatch,
        breakage: str) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    if breakage == "wrong token":
        monkeypatch.setenv("EINVOICE_CONFORMANCE_CHECK_TOKEN", "not-the-token")
    else:
        monkeypatch.setenv("EINVOICE_CONFORMANCE_CHECK", "http://127.0.0.1:9/")
    settings.cache_clear()
    runtime.invoice_documents.cache_clear()
    answer = issue(client, key["secret"], recent(), key="remote-broken")
    assert answer.status_code == 503, answer.body
    assert answer.headers["Retry-After"] == "30"
    assert "nothing was issued" in answer.json_body["detail"]
    assert get(client, key["secret"], "/invoices").json_body["invoices"] == []
