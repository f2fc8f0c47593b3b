"""The document types we issue (BT-3), for every layer: standard library only,
so the ports and the database adapter name them without loading the invoice model."""

from __future__ import annotations

from enum import StrEnum


class DocumentType(StrEnum):
    """BT-3, the UNTDID 1001 document type code, as the invoice row, the ledger
    and the CII XML write it. The draft's JSON carries it as a number (`code`)."""

    INVOICE = "380"
    CREDIT_NOTE = "381"

    @property
    def code(self) -> int:
        """The code as a JSON number, the draft's `type_code`."""
        return int(self.value)

    def named_by(self, raw: object) -> bool:
        """Whether a caller's raw `type_code` (a JSON number or its text) is this type."""
        return raw in (self.code, self.value)
