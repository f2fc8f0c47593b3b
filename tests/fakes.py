"""In-memory stand-ins for the ports in chalicelib/ports.py: enough of each
to drive the use cases' branch logic in milliseconds, with no PostgreSQL, no
S3 and no schematron worker. What the engine itself enforces (constraints,
triggers, row locks) is left to the PostgreSQL tests."""

from __future__ import annotations

from datetime import UTC, datetime


class FrozenClock:
    """A clock that says what it is told (the Clock port)."""

    def __init__(self, moment: datetime = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment
