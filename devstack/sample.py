"""The sample invoice of the README's try-it line and the run command's banner, dated today.

events/invoice.json is a real-shaped draft with fixed dates; an invoice may not
be dated more than 31 days back, so what the banner's curl sends is that draft
with today's issue date (Europe/Paris) and a due date 30 days later.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

EVENT = Path(__file__).resolve().parent.parent / "events" / "invoice.json"


def sample_invoice(today: date | None = None) -> bytes:
    day = today or datetime.now(ZoneInfo("Europe/Paris")).date()
    draft = json.loads(EVENT.read_text(encoding="utf-8"))
    draft["issue_date"] = day.isoformat()
    draft["due_date"] = (day + timedelta(days=30)).isoformat()
    return json.dumps(draft, ensure_ascii=False, indent=2).encode("utf-8")
