"""Text PostgreSQL can store and UTF-8 can encode: no NUL, no lone surrogate;
and what a plain email address is."""

from __future__ import annotations

import re

# A plain address only (no comments, display names, quotes or lists, which a
# mail library would parse into another address than the one checked):
# a dot-atom local part and LDH domain labels with an alphabetic TLD.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_EMAIL = re.compile(rf"(?=.{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")


def is_plain_email(value: str) -> bool:
    return _PLAIN_EMAIL.fullmatch(value) is not None


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "must not contain the NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    return None
