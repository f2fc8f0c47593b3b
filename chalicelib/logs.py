"""The service's one logger: Powertools JSON with a correlation id, and a
formatter that redacts secrets from every log line whatever put them there.

Redaction runs on the whole structured record just before it is serialised
(message, extra keys, appended keys alike), so no code path can bypass it:
values under secret-bearing keys (password, code, token, cookie, ...) at any
depth; and in any string, `eik_` API keys, bearer tokens, session and CSRF
cookies, otpauth URIs, IBANs, 256-bit tokens, and the local part of email
addresses (the domain is kept).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

_SECRET_KEYS = ("password", "current_password", "new_password", "secret", "token", "code",
                "recovery_code", "recovery_codes", "authorization", "cookie", "set-cookie",
                "x-csrf-token", "otpauth_uri", "iban")
_RULES: list[tuple[re.Pattern[str], str]] = [
    # "key": "value" and "key": [ ... ] under secret-bearing keys, in a string
    # that itself holds JSON.
    (re.compile(r'("(?:' + "|".join(re.escape(k) for k in _SECRET_KEYS)
                + r')"\s*:\s*)("(?:[^"\\]|\\.)*"|\[[^\]]*\])', re.IGNORECASE),
     r'\1"[REDACTED]"'),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 [REDACTED]"),
    (re.compile(r"eik_[A-Za-z0-9_\-]+"), "eik_[REDACTED]"),
    (re.compile(r"(?i)\b(session|csrf)=[^;\s\"\\]+"), r"\1=[REDACTED]"),
    (re.compile(r"otpauth://[^\s\"\\]+"), "otpauth://[REDACTED]"),
    # IBAN: country, check digits, 11 to 30 alphanumerics, optionally in groups.
    (re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}"), "[IBAN]"),
    (re.compile(r"[A-Za-z0-9._%+\-]+@([A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+)"), r"***@\1"),
    # Anything that looks like a 256-bit random token (base64url, 43+ chars).
    (re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43,}(?![A-Za-z0-9_\-])"), "[TOKEN]"),
]


def redact(text: str) -> str:
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def scrub(value: Any) -> Any:
    """`value` with secrets redacted, at any depth of dicts and lists."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: "[REDACTED]" if str(key).lower() in _SECRET_KEYS else scrub(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


class RedactingFormatter(LambdaPowertoolsFormatter):
    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        return super().serialize(scrub(log))


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class RedactingFilter(logging.Filter):
    """Scrubs the record itself, so a handler with another formatter (one a
    runtime or a framework adds) cannot print what the formatter would hide."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                setattr(record, key, "[REDACTED]" if key.lower() in _SECRET_KEYS
                        else scrub(value))
        return True


logger = Logger(service="einvoice", logger_formatter=RedactingFormatter())
_std = logging.getLogger("einvoice")
_std.addFilter(RedactingFilter())
# Not to the root logger, whose handler (the Lambda runtime's) has its own format.
_std.propagate = False
