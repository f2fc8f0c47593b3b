"""Second factor: TOTP codes (RFC 6238, through pyotp) and recovery codes.

A code is accepted for the current 30-second step or one step either side
(clock drift); the caller records the step so that no code is good twice.
Recovery codes carry 80 random bits each and are kept only as digests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from uuid import UUID

import pyotp

ISSUER = "einvoice"
DRIFT_STEPS = 1
RECOVERY_CODES = 10


def new_totp_secret() -> str:
    """160 random bits in base32, the size RFC 4226 recommends."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, account_name: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account_name, issuer_name=ISSUER)


def accepted_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step `code` is valid for at `now`, or None."""
    code = code.replace(" ", "")
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    found = None
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):  # no early exit: same work each time
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            found = current + offset
    return found


def new_recovery_codes() -> list[str]:
    """Ten codes of 16 base32 characters (80 bits), shown as XXXX-XXXX-XXXX-XXXX."""
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode()
        codes.append("-".join(raw[i:i + 4] for i in range(0, 16, 4)))
    return codes


def recovery_code_hash(user_id: UUID, code: str) -> bytes:
    """The stored digest; dashes, spaces and case do not matter when typing."""
    normalised = "".join(c for c in code.upper() if c not in "- ")
    return hashlib.sha256(f"einvoice-recovery-v1|{user_id}|{normalised}".encode()).digest()
