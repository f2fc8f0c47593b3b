"""The scheduled retention purge (docs/operations.md, "Triggers"): personal data goes
when its period ends, whether or not anyone remembers to ask."""

from __future__ import annotations

from chalicelib.ports import Retention


def purge_expired(retention: Retention) -> dict[str, int]:
    """Rows removed per kind of data. Access logs: a year (the truncated
    address is personal data); unconfirmed sign-ups: once their link expired.
    More kinds join as they are built."""
    return {"access_log": retention.purge_access_log(),
            "pending_signups": retention.purge_pending_signups()}
