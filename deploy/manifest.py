"""What is deployed: one entry per function, the single source both Terraform
trees, the packager and their tests are checked against.

Each function is one use case (or the HTTP API, which Chalice serves from one
function on AWS as well). `app_triggers` names the functions of app.py it
carries, so a test can prove every trigger of app.py is deployed on both
providers; the conformance check and the migration job have no trigger in
app.py (the first is called by issuing, the second by the deploy).

`scaleway_runs_as` says what carries a unit on Scaleway: a Function (the
Alpine, musl runtime) or, for a unit whose wheels exist for glibc only, a
private Serverless Container built from its package (deploy/package.py makes
that package a container build context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Trigger = Literal["http", "queue", "schedule", "invoke", "job"]
ScalewayRuntime = Literal["function", "container"]


@dataclass(frozen=True)
class Function:
    name: str  # the deployment unit: Scaleway function name, AWS name suffix, dist/<name>.zip
    trigger: Trigger
    aws_handler: str  # Lambda handler, module.attribute
    scaleway_handler: str  # Scaleway handler, path/file.attribute
    app_triggers: tuple[str, ...]  # the app.py functions this unit serves
    cron: str | None = None  # UNIX cron, UTC (Scaleway); AWS takes the same minute/hour
    queue_setting: str | None = None  # the Settings field naming its queue
    timeout_seconds: int = 30
    memory_mb: int = 512
    scaleway_runs_as: ScalewayRuntime = "function"  # scaleway_function or scaleway_container


# app.py's schedules, as UNIX cron in UTC (app.py states the same times).
FUNCTIONS: tuple[Function, ...] = (
    Function("api", "http", "app.app", "functions/api.handle",
             app_triggers=("*routes*",), timeout_seconds=30, memory_mb=1024),
    Function("health", "http", "functions.health.handler", "functions/health.handle",
             app_triggers=(), timeout_seconds=10, memory_mb=256),
    Function("conformance-check", "invoke", "functions.conformance_check.handle_aws",
             "functions/conformance_check.handle", app_triggers=(), timeout_seconds=30,
             memory_mb=1024, scaleway_runs_as="container"),  # saxonche: no musl wheel
    Function("append-ledger", "queue", "app.append_ledger_entries",
             "functions/append_ledger.handle", app_triggers=("append_ledger_entries",),
             queue_setting="ledger_queue", timeout_seconds=30, memory_mb=512),
    Function("issue-invoice", "queue", "app.issue_queued_invoices",
             "functions/issue_invoice.handle", app_triggers=("issue_queued_invoices",),
             queue_setting="invoice_queue", timeout_seconds=120, memory_mb=1024),
    Function("retention-purge", "schedule", "app.retention_purge",
             "functions/retention_purge.handle", app_triggers=("retention_purge",),
             cron="17 3 * * *", timeout_seconds=300),
    Function("scheduled-closings", "schedule", "app.scheduled_closings",
             "functions/scheduled_closings.handle", app_triggers=("scheduled_closings",),
             cron="5 * * * *", timeout_seconds=600),
    Function("anchor-retries", "schedule", "app.anchor_retries",
             "functions/anchor_retries.handle", app_triggers=("anchor_retries",),
             cron="7-59/15 * * * *", timeout_seconds=300),
    Function("archive-sweep", "schedule", "app.archive_sweep",
             "functions/archive_sweep.handle", app_triggers=("archive_sweep",),
             cron="*/10 * * * *", timeout_seconds=300),
    Function("migrate", "job", "functions.migrate.handle_aws", "functions/migrate.handle",
             app_triggers=(), timeout_seconds=300, memory_mb=256),
)


def function(name: str) -> Function:
    for f in FUNCTIONS:
        if f.name == name:
            return f
    raise KeyError(name)
