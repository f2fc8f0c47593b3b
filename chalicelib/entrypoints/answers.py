"""What each failure of a route becomes over HTTP, decided by the error's type.

The caller's errors (DomainError) say which field broke which rule; a fault of
ours is a 5xx that says what cannot be done and whether a retry helps, never
the fault's own text (logged by type only: it may quote data).
"""

from __future__ import annotations

from collections.abc import Callable

from chalice.app import Response

from chalicelib.domain.errors import (
    ArchiveNotSafe,
    ArchiveTampered,
    DomainError,
    ServiceUnavailable,
    TooManyRequests,
)
from chalicelib.logs import logger


def answer(act: Callable[[], Response]) -> Response:
    """What `act` answers, or the HTTP answer to what it raised."""
    unavailable: ServiceUnavailable | None = None
    try:
        return act()
    except TooManyRequests as exc:
        return Response(body=exc.as_dict(), status_code=exc.status,
                        headers={"Retry-After": str(exc.retry_after)})
    except DomainError as exc:
        return Response(body=exc.as_dict(), status_code=exc.status)
    except ArchiveNotSafe as exc:  # configuration, not the caller: nothing was issued
        logger.error("archive refused", extra={"reason": str(exc)})
        return Response(body={"error": "ArchiveNotSafe", "detail": "the archive cannot keep "
                              "invoices locked for the legal period: no invoice is issued "
                              "until it can, and the operator is alerted"}, status_code=503,
                        headers={"Retry-After": "300"})
    except ArchiveTampered:
        logger.error("archive integrity check failed")
        return Response(body={"error": "ArchiveTampered", "detail": "the archived document "
                              "does not match the checksum the ledger holds; it is not "
                              "served, and the operator is alerted"}, status_code=502)
    except ServiceUnavailable as exc:  # ours, for now: nothing was done, retry later
        unavailable = exc
    except Exception as exc:  # noqa: BLE001 - answered 500, logged below by type only
        failure = type(exc).__name__
    # Logged outside the except blocks: if logging itself failed, its report
    # would otherwise print the original exception, whose text may quote data.
    if unavailable is not None:
        logger.error(unavailable.alert, extra=dict(unavailable.context))
        return Response(body={"error": type(unavailable).__name__,
                              "detail": unavailable.detail}, status_code=unavailable.status,
                        headers={"Retry-After": str(unavailable.retry_after)})
    logger.error("request failed", extra={"reason": failure})
    return Response(body={"error": "internal error"}, status_code=500)
