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

# The entries whose totals a closing sums (the money of the period).
MONEY_KINDS: Final = (INVOICE_ISSUED, CREDIT_NOTE_ISSUED)

# What a witness object in the archive holds: the chain at a closing's
# `closing.sealed` entry, or the chain's head between closings.
WITNESS_OF_CLOSING: Final = "closing"
WITNESS_OF_HEAD: Final = "head"
WITNESS_KINDS: Final = (WITNESS_OF_CLOSING, WITNESS_OF_HEAD)
