"""The typed archive receipt keeps the bytes it always had: the `archive`
column holds the same canonical JSON, and the API shows the same object."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import rfc8785

from chalicelib.adapters.postgres.invoices import receipt_of, receipt_text
from chalicelib.ports import ArchivedObject, ArchiveReceipt

PDF = ArchivedObject(key="tenants/t/invoices/2026/F-000001.pdf", version_id="v-pdf-1",
                     sha256=bytes(range(32)), mode="COMPLIANCE",
                     retain_until=datetime(2037, 12, 31, 23, 0, 0, tzinfo=UTC))
XML = ArchivedObject(key="tenants/t/invoices/2026/F-000001.xml", version_id="v-xml-1",
                     sha256=bytes(range(32, 64)), mode="COMPLIANCE",
                     retain_until=datetime(2037, 12, 31, 23, 0, 0, 123456, tzinfo=UTC))
RECEIPT = ArchiveReceipt((("pdf", PDF), ("xml", XML)))


def written_before(stored: list[ArchivedObject]) -> str:
    """The receipt text as the use case built it when the receipt was a JSON string."""
    receipt: dict[str, Any] = {"objects": [
        {"kind": kind, "key": o.key, "version_id": o.version_id, "sha256": o.sha256.hex(),
         "mode": o.mode, "retain_until": o.retain_until.isoformat()}
        for kind, o in zip(("pdf", "xml"), stored, strict=True)]}
    return rfc8785.dumps(receipt).decode()


def test_the_column_holds_the_bytes_written_before() -> None:
    assert receipt_text(RECEIPT) == written_before([PDF, XML])
    assert receipt_text(RECEIPT).startswith(
        '{"objects":[{"key":"tenants/t/invoices/2026/F-000001.pdf","kind":"pdf",'
        '"mode":"COMPLIANCE","retain_until":"2037-12-31T23:00:00+00:00","sha256":"000102')


def test_a_receipt_read_back_is_the_receipt_written() -> None:
    text = receipt_text(RECEIPT)
    assert receipt_of(text) == RECEIPT
    assert receipt_of(None) is None
    read = receipt_of(text)
    assert read is not None and receipt_text(read) == text


def test_the_api_shows_the_object_it_showed_before() -> None:
    # The edge used to show json.loads of the column: the same keys in the same order.
    before = json.dumps(json.loads(written_before([PDF, XML])))
    assert json.dumps(RECEIPT.as_dict()) == before
    read = receipt_of(receipt_text(RECEIPT))
    assert read is not None and json.dumps(read.as_dict()) == before
