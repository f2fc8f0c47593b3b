"""The names the service writes into a tenant's chain, in one place.

A ledger entry's `kind` is part of its hash: a name once written is kept
forever, so these are never renamed. The engine's SQL (migrations) and the
offline verifier (chalicelib/audit/verify.py, standard library only) spell the
same names; a unit test keeps the verifier's copy equal to these.
Standard library only.
"""

from __future__ import annotations

from typing import Final

INVOICE_ISSUED: Final = "invoice.issued"
CREDIT_NOTE_ISSUED: Final = "credit_note.issued"
INVOICE_ARCHIVED: Final = "invoice.archived"
QUOTE_CREATED: Final = "quote.created"
QUOTE_CONVERTED: Final = "quote.converted"
CLOSING_SEALED: Final = "closing.sealed"
# A lifecycle status the PA reported (200 Déposée ... 212 Encaissée, 213 Rejetée):
# written by the poller only, naming an issued invoice (migration 0025). Not
# money: a closing does not sum it.
STATUS_CHANGED: Final = "status.changed"

# The entries whose totals a closing sums (the money of the period).
MONEY_KINDS: Final = (INVOICE_ISSUED, CREDIT_NOTE_ISSUED)

# Fiscal kinds: written only by the use case that owns them, with the record
# that backs them. The engine refuses an `invoice.issued` / `credit_note.issued`
# entry that no issued invoice row records with the same number, type, date,
# totals and hashes (migration 0021). Payments and statuses join when they exist.
FISCAL_KINDS: Final = (INVOICE_ISSUED, CREDIT_NOTE_ISSUED)

# Every kind the service's own use cases write.
SERVICE_KINDS: Final = (INVOICE_ISSUED, CREDIT_NOTE_ISSUED, INVOICE_ARCHIVED, QUOTE_CREATED,
                        QUOTE_CONVERTED, CLOSING_SEALED, STATUS_CHANGED)

# The namespaces (the part before the first dot) of the service's kinds, and of
# the fiscal kinds to come: the engine refuses any kind in them that is not in
# SERVICE_KINDS (0021), and the generic append-ledger queue writes none of
# them. What the queue may write: any other well-formed kind, e.g. `note.added`.
SERVICE_NAMESPACES: Final = ("invoice", "credit_note", "quote", "closing", "payment", "status")


def generic_kind_problem(kind: str) -> str | None:
    """Why the generic append-ledger path may not write `kind`, or None."""
    if kind.split(".", 1)[0] in SERVICE_NAMESPACES:
        names = ", ".join(f"{n}." for n in SERVICE_NAMESPACES)
        return (f"{kind} is written only by the service's own use cases (kinds under "
                f"{names} are theirs): this queue takes only other kinds")
    return None

# What a witness object in the archive holds: the chain at a closing's
# `closing.sealed` entry, or the chain's head between closings.
WITNESS_OF_CLOSING: Final = "closing"
WITNESS_OF_HEAD: Final = "head"
WITNESS_KINDS: Final = (WITNESS_OF_CLOSING, WITNESS_OF_HEAD)
