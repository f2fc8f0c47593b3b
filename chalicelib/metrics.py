"""The service's metrics: Powertools Metrics, namespace and service "einvoice".

Each metric is counted where its event happens and the invocation's counts
leave as one CloudWatch EMF JSON line on stdout when it ends (`flush`, called
by chalicelib/entrypoints/invocation.py for every trigger). On AWS that line
becomes CloudWatch metrics as it is (EMF, what Powertools prints); on Scaleway
the same line is a structured log line in Cockpit, counted by a log query.

Counting is observation, never work: `count` and `flush` swallow their own
failures (logged by type), so a metric can never fail the use case.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aws_lambda_powertools.metrics import Metrics

NAMESPACE: Final = "einvoice"
SERVICE: Final = "einvoice"

# An invoice or credit note was issued (numbered and committed): once per
# document, not per retry of the same request.
INVOICES_ISSUED: Final = "InvoicesIssued"
# An issued invoice could not be put under Object Lock (deferred to the sweep),
# the sweep failed one, or the bucket was refused as unable to keep invoices.
ARCHIVE_FAILURES: Final = "ArchiveFailures"
# An anchoring attempt failed (calendar or TSA unreachable or refusing), or
# anchoring a closing, or reading or recording an anchor, failed.
ANCHORING_FAILURES: Final = "AnchoringFailures"
# A chain contradicts its newest witness in the archive (cut short,
# rewritten, or the witness is not ours): an alarm, never a retry.
WITNESS_ALARMS: Final = "WitnessAlarms"
# A rate limit refused a request (429 with Retry-After).
RATE_LIMIT_REFUSALS: Final = "RateLimitRefusals"
# An archived invoice's recorded object version could not be read back (gone,
# a delete marker, an unknown version id): an alarm, the download answers 503.
ARCHIVE_MISSING: Final = "ArchiveMissing"

NAMES: Final = (INVOICES_ISSUED, ARCHIVE_FAILURES, ANCHORING_FAILURES, WITNESS_ALARMS,
                RATE_LIMIT_REFUSALS, ARCHIVE_MISSING)

_recorder: Metrics | None = None


def _metrics() -> Metrics:
    """Built on first use: a trigger that counts nothing never builds it."""
    global _recorder
    if _recorder is None:
        from aws_lambda_powertools.metrics import Metrics

        _recorder = Metrics(namespace=NAMESPACE, service=SERVICE)
    return _recorder


def count(name: str, value: int = 1) -> None:
    """Add `value` to the metric `name` for this invocation; never raises."""
    try:
        from aws_lambda_powertools.metrics import MetricUnit

        _metrics().add_metric(name=name, unit=MetricUnit.Count, value=value)
    except Exception as exc:  # noqa: BLE001 - observation never fails the work
        from chalicelib.logs import logger

        logger.warning("metric not counted", extra={"metric": name, "reason": type(exc).__name__})


def flush() -> None:
    """Print this invocation's counts as one EMF line (nothing if none); never raises."""
    if _recorder is None or not _recorder.metric_set:
        return
    try:
        _recorder.flush_metrics()
    except Exception as exc:  # noqa: BLE001 - observation never fails the work
        from chalicelib.logs import logger

        logger.warning("metrics not flushed", extra={"reason": type(exc).__name__})
        with contextlib.suppress(Exception):  # a set that cannot print is dropped
            _recorder.clear_metrics()
