"""How the edge is wired: runtime alone builds adapters, cold starts stay
light, every plain function has its `handle`, failures answer by type."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from chalice.app import Response

from chalicelib.domain.errors import ServiceUnavailable
from chalicelib.entrypoints.answers import answer
from chalicelib.entrypoints.schedules import time_budget

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


EDGE = [ROOT / "app.py", *sorted((ROOT / "chalicelib" / "entrypoints").glob("*.py")),
        *sorted((ROOT / "functions").glob("*.py"))]


@pytest.mark.parametrize("path", EDGE, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_edge_names_no_adapter(path: Path) -> None:
    """Adapters are built in chalicelib/runtime.py only."""
    named = sorted(m for m in _imported_modules(path)
                   if m == "chalicelib.adapters" or m.startswith("chalicelib.adapters."))
    assert named == [], f"{path.name} imports {named}: ask chalicelib.runtime instead"


def _loaded_after(statement: str) -> list[str]:
    code = (f"import json, sys; {statement}; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=120).stdout
    loaded: list[str] = json.loads(out)
    return loaded


def test_runtime_loads_no_adapter_until_a_factory_is_called() -> None:
    loaded = _loaded_after("import chalicelib.runtime")
    heavy = [m for m in loaded if m.startswith(("chalicelib.adapters", "boto3", "pg8000",
                                                "chalicelib.documents", "opentimestamps"))]
    assert heavy == []


def test_the_app_loads_no_route_module_until_a_route_is_called() -> None:
    loaded = _loaded_after("import app")
    edge = [m for m in loaded if m.startswith("chalicelib.entrypoints.")]
    assert edge == ["chalicelib.entrypoints.cors"]


@pytest.mark.parametrize("path", sorted((ROOT / "functions").glob("[!_]*.py")),
                         ids=lambda p: p.stem)
def test_every_plain_function_exposes_handle(path: Path) -> None:
    """Scaleway's Python runtime calls `handle` by default."""
    module = importlib.import_module(f"functions.{path.stem}")
    assert callable(getattr(module, "handle", None)), f"functions/{path.name} lacks handle"


class _BrokerDown(ServiceUnavailable):
    detail = "the broker cannot answer right now: nothing was done"
    alert = "broker unavailable"
    retry_after = 7


class SchematronUnavailable(RuntimeError):  # the real one's name, not its type
    pass


def _raising(exc: Exception) -> Callable[[], Response]:
    def act() -> Response:
        raise exc
    return act


def test_a_service_unavailable_answers_503_with_its_retry_after() -> None:
    from chalicelib.documents.schematron import SchematronUnavailable as Real

    for exc, retry_after, detail in ((_BrokerDown("x"), "7", _BrokerDown.detail),
                                     (Real("the worker died twice"), "30",
                                      "nothing was issued")):
        response = answer(_raising(exc))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == retry_after
        assert response.body["error"] == type(exc).__name__
        assert detail in response.body["detail"]
        assert "x" not in response.body["detail"].split() and "died" not in json.dumps(
            response.body)


def test_errors_map_by_type_never_by_name() -> None:
    response = answer(_raising(SchematronUnavailable("lookalike")))
    assert response.status_code == 500 and response.body == {"error": "internal error"}


def test_the_anchoring_budget_leaves_room_for_one_round() -> None:
    assert time_budget(lambda: 30_000, 2 / 3) == pytest.approx(12.0)
    assert time_budget(lambda: 30_000, 1) == pytest.approx(18.0)
    assert time_budget(lambda: 5_000, 1) == 0.0


# Which functions/ module serves each of app.py's event sources on Scaleway
# (every HTTP route: functions/api.py). A trigger added to app.py without its
# Scaleway entry, or an entry left without its trigger, fails below.
SCALEWAY_ENTRIES = {
    "append_ledger_entries": "append_ledger",
    "issue_queued_invoices": "issue_invoice",
    "retention_purge": "retention_purge",
    "scheduled_closings": "scheduled_closings",
    "anchor_retries": "anchor_retries",
    "archive_sweep": "archive_sweep",
}


def test_every_trigger_of_the_app_has_a_scaleway_entry() -> None:
    from chalice.app import ScheduledEventConfig, SQSEventConfig

    import app as app_module
    from functions.api import match_route

    sources = app_module.app.event_sources
    assert all(isinstance(s, ScheduledEventConfig | SQSEventConfig) for s in sources)
    assert sorted(s.name for s in sources) == sorted(SCALEWAY_ENTRIES)
    for name, module in SCALEWAY_ENTRIES.items():
        assert (ROOT / "functions" / f"{module}.py").is_file(), f"{name}: no functions/{module}.py"
    # Every route is reached through functions/api.py, with its parameters.
    for template in app_module.app.routes:
        concrete = template.replace("{", "v-").replace("}", "")
        found = match_route(concrete)
        assert found is not None and found[0] == template, template
        assert all(value == f"v-{name}" for name, value in found[1].items())
    # And no module in functions/ serves nothing (health predates the adapter;
    # migrate is the deploy's one-shot job, and issuing calls the conformance
    # check: neither has a trigger in app.py).
    served = {*SCALEWAY_ENTRIES.values(), "api", "health", "migrate", "conformance_check"}
    assert {p.stem for p in (ROOT / "functions").glob("[!_]*.py")} == served


@pytest.mark.parametrize(("forwarded_for", "client"), [
    ("51.158.1.2", "51.158.1.2"),
    ("8.8.8.8, 51.158.1.2", "51.158.1.2"),  # the client's own entry is on the left
    ("8.8.8.8, 51.158.1.2, 100.64.0.7, 10.0.0.3", "51.158.1.2"),  # internal hops after
    ("garbage, 2a01:4f8::1", "2a01:4f8::1"),
    ("127.0.0.1", "127.0.0.1"),  # no public address: the rightmost
    ("8.8.8.8, 10.1.1.1, not-an-address", "8.8.8.8"),
    ("", ""),
])
def test_the_client_address_is_the_rightmost_public_entry(forwarded_for: str,
                                                          client: str) -> None:
    from functions.api import client_address

    assert client_address(forwarded_for) == client


def test_the_scaleway_adapter_loads_no_route_module_until_called() -> None:
    loaded = _loaded_after("import functions.api")
    assert [m for m in loaded if m.startswith(("chalicelib", "chalice", "app"))] == []
