"""How long the archive keeps an invoice (CGI art. L102 B: 10 years from the
end of the financial year, kept 11 from the issue date to cover it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

LEGAL_YEARS = 11


def retain_until_for(issue_date: date, legal_years: int = LEGAL_YEARS) -> datetime:
    """12:00 UTC of the day after `issue_date + legal_years` years: the lock
    covers the whole last day in every time zone down to UTC-12 (the overseas
    departments included). A 29 February whose target year has none becomes
    1 March (the later day): never earlier than the law asks."""
    year = issue_date.year + legal_years
    try:
        last_day = issue_date.replace(year=year)
    except ValueError:  # 29 February -> a year without one
        last_day = date(year, 3, 1)
    return datetime.combine(last_day + timedelta(days=1), time(12, 0), tzinfo=UTC)


def minimum_days(legal_years: int = LEGAL_YEARS) -> int:
    """Days a default retention must have to cover `legal_years` years from any
    start: 365 a year plus the most 29 Februaries such a span can hold, one per
    started four years (11 years: 4015 + 3 = 4018)."""
    return legal_years * 365 + (legal_years + 3) // 4
