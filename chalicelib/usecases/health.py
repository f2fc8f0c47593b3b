"""Health: does each dependency answer? Says which, never why in detail."""

from __future__ import annotations

from collections.abc import Callable, Mapping


def check_health(probes: Mapping[str, Callable[[], object]]) -> tuple[int, dict[str, str]]:
    """(HTTP status, body): 200 when every probe answers, else 503."""
    report: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            probe()
            report[name] = "up"
        except Exception:  # noqa: BLE001 - any failure means "down"
            report[name] = "down"
    ok = all(state == "up" for state in report.values())
    return (200 if ok else 503), {"status": "ok" if ok else "degraded", **report}
