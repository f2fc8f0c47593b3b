"""Lock-out with exponential back-off after repeated wrong credentials.

Rate limits cap attempts per minute; this grows the wait with each further
failure (30 s, 1 min, 2 min, ... up to a cap), so guessing a password or a
six-digit code stays hopeless over days. Locks are per key: a password for an
account *from one address* locks early and long; the same account from all
addresses only after many more failures and for at most the shorter account cap,
so a remote attacker cannot keep its owner out for long. While locked, even
the right credential is refused (otherwise guessing would go on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from chalicelib.domain.errors import (
    TooManyRequests,
    Violation,
    WrongPassword,
    WrongSecondFactor,
)
from chalicelib.ports import Lockouts

Result = TypeVar("Result")


@dataclass(frozen=True)
class Backoff:
    """Lock after `free` failures for `base`, doubling with each more, up to `cap`."""

    free: int
    base: timedelta
    cap: timedelta


def guarded(lockouts: Lockouts, keys: list[tuple[str, Backoff]],
            attempt: Callable[[], Result]) -> Result:
    """Run `attempt` unless a key is locked; count its wrong credentials on
    every key, and forget them all on success."""
    waits = [(key, lockouts.wait(key)) for key, _ in keys]
    locked = [(key, wait) for key, wait in waits if wait > 0]
    if locked:
        raise TooManyRequests([Violation(key.split("|", 1)[0], "locked after repeated "
                                         "failures; retry later") for key, _ in locked],
                              max(wait for _, wait in locked))
    try:
        result = attempt()
    except (WrongPassword, WrongSecondFactor):
        for key, backoff in keys:
            lockouts.fail(key, backoff.free, backoff.base, backoff.cap)
        raise
    for key, _ in keys:
        lockouts.clear(key)
    return result
