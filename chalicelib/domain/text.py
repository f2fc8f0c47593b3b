"""Text PostgreSQL can store and UTF-8 can encode: no NUL, no lone surrogate."""

from __future__ import annotations


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain the NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None
