"""PostgreSQL adapter (pg8000), one module per aggregate.

`database` holds the connections as the application role and the
tenant-scoped unit of work; each other module holds the stores of one
aggregate (accounts, API keys, limits, access log, sign-ups, data keys and
the sealed columns, invoices, quotes, ledger, closings, anchors). Every
public name is importable from here too.
"""

from __future__ import annotations

from chalicelib.adapters.postgres.access_log import PostgresAccessLog, PostgresRetention
from chalicelib.adapters.postgres.accounts import (
    PostgresLoginDirectory,
    PostgresSecondFactors,
    PostgresSessionDirectory,
    PostgresSessions,
    PostgresUsers,
)
from chalicelib.adapters.postgres.anchors import (
    PostgresAnchors,
    anchor_store,
    anchor_stores,
    anchors_to_retry,
    closings_to_anchor,
    read_anchors,
)
from chalicelib.adapters.postgres.api_keys import PostgresApiKeyDirectory, PostgresApiKeys
from chalicelib.adapters.postgres.closings import PostgresClosings, tenants_to_seal
from chalicelib.adapters.postgres.data_keys import PostgresDataKeys
from chalicelib.adapters.postgres.database import (
    Database,
    TenantUnitOfWork,
    app_connector,
    connector,
    tls_context,
)
from chalicelib.adapters.postgres.invoices import PostgresInvoices, invoices_awaiting_archive
from chalicelib.adapters.postgres.ledger import PAGE_BYTES, PAGE_SIZE, PostgresLedger
from chalicelib.adapters.postgres.limits import PostgresLockouts, PostgresRateLimiter
from chalicelib.adapters.postgres.quotes import PostgresQuotes
from chalicelib.adapters.postgres.sealed import SEALED_FORMAT, CipherSource, SealedColumns
from chalicelib.adapters.postgres.signups import PostgresPendingSignUps, PostgresSignUpClaims
from chalicelib.adapters.postgres.sql import Isolation, Transactions, sqlstate
from chalicelib.adapters.postgres.tenants import PostgresTenants

__all__ = [
    "PAGE_BYTES",
    "PAGE_SIZE",
    "SEALED_FORMAT",
    "CipherSource",
    "Database",
    "Isolation",
    "PostgresAccessLog",
    "PostgresAnchors",
    "PostgresApiKeyDirectory",
    "PostgresApiKeys",
    "PostgresClosings",
    "PostgresDataKeys",
    "PostgresInvoices",
    "PostgresLedger",
    "PostgresLockouts",
    "PostgresLoginDirectory",
    "PostgresPendingSignUps",
    "PostgresQuotes",
    "PostgresRateLimiter",
    "PostgresRetention",
    "PostgresSecondFactors",
    "PostgresSessionDirectory",
    "PostgresSessions",
    "PostgresSignUpClaims",
    "PostgresTenants",
    "PostgresUsers",
    "SealedColumns",
    "TenantUnitOfWork",
    "Transactions",
    "anchor_store",
    "anchor_stores",
    "anchors_to_retry",
    "app_connector",
    "closings_to_anchor",
    "connector",
    "invoices_awaiting_archive",
    "read_anchors",
    "sqlstate",
    "tenants_to_seal",
    "tls_context",
]
