"""The process that runs saxonche for `schematron.SchematronChecker`.

saxonche (SaxonC-HE, a GraalVM native image) binds to the first thread that
starts it, crashes the process when a second thread starts another processor,
and aborts in a forked child. So it lives here, alone in a process started
with `python -m chalicelib.documents.schematron_worker SPECS_JSON`, one thread,
compiling its stylesheets once and answering requests until stdin closes
(its parent closed it, or died).

Protocol, both ways: frames of a 4-byte big-endian length then the payload.
The worker speaks first: READY (or ERROR if it cannot compile, then exits).
Each request is the invoice XML bytes; each answer is one status byte then a
body: OK + JSON list of [rule, flag, location, text], NOT_XML + a message, or
ERROR + a message. This module imports neither saxonche nor lxml at import
time: the parent imports it for the constants only.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
import traceback
from typing import IO, Any, Final

HEADER: Final = struct.Struct(">I")
MAX_FRAME: Final = 256 * 1024 * 1024

READY: Final = b"R"
OK: Final = b"O"
NOT_XML: Final = b"N"
ERROR: Final = b"E"

SVRL: Final = "http://purl.oclc.org/dsdl/svrl"
# Rule id of the one failure returned when a stylesheet stops on a dynamic
# error (an amount that is not a number, for instance): the invoice is not
# valid, and the check must not pass for it.
EVALUATION_ERROR: Final = "SCHEMATRON-EVALUATION-ERROR"


class _NotXml(Exception):
    """The request is not an XML document the stylesheets can validate."""


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:  # EOF: the parent closed our stdin or died
        return None
    return data


def read_frame(stream: IO[bytes]) -> bytes | None:
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME} limit")
    return _read_exactly(stream, size) if size else b""


def write_frame(stream: IO[bytes], status: bytes, body: bytes) -> None:
    stream.write(HEADER.pack(len(status) + len(body)) + status + body)
    stream.flush()


class _Engine:
    """The compiled stylesheets and the one Saxon processor that owns them."""

    def __init__(self, specs: list[dict[str, str]]) -> None:
        from lxml import etree
        from saxonche import PySaxonProcessor

        self._etree = etree
        # No DTD, no entity, no network: an invoice has none, and the bytes
        # come from outside.
        self._parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        started = time.perf_counter()
        self._processor = PySaxonProcessor(license=False)
        xslt = self._processor.new_xslt30_processor()
        # Compiled from the file path: the stylesheets load their code lists
        # relative to their own location.
        self._compiled = [
            (spec["name"], spec["root"], xslt.compile_stylesheet(stylesheet_file=spec["path"]))
            for spec in specs
        ]
        self.compile_seconds = time.perf_counter() - started
        self.saxon_version = str(self._processor.version)

    def _parse(self, xml: bytes) -> tuple[str, str]:
        """The document re-serialised for Saxon, and its root's Clark name."""
        try:
            root = self._etree.fromstring(xml, self._parser)
        except (self._etree.XMLSyntaxError, ValueError) as error:
            raise _NotXml(f"not well-formed XML: {error}") from None
        docinfo = root.getroottree().docinfo
        if docinfo.doctype or docinfo.internalDTD is not None:
            raise _NotXml("a DOCTYPE is not allowed in an invoice")
        return self._etree.tostring(root, encoding="unicode"), str(root.tag)

    def check(self, xml: bytes) -> list[list[str]]:
        text, root_tag = self._parse(xml)
        for name, root, _ in self._compiled:
            if root_tag != root:
                raise _NotXml(f"the root element is {root_tag}, {name} validates {root}")
        try:
            node = self._processor.parse_xml(xml_text=text)
        except Exception as error:  # noqa: BLE001 - PySaxonApiError, not importable for typing
            raise _NotXml(f"Saxon cannot parse the document: {error}") from None
        failures: list[list[str]] = []
        for name, _, executable in self._compiled:
            try:
                svrl = executable.transform_to_string(xdm_node=node)
            except Exception as error:  # noqa: BLE001 - a dynamic error stops the stylesheet
                message = " ".join(str(error).split())
                failures.append(
                    [EVALUATION_ERROR, "fatal", "/",
                     f"{name} could not evaluate the document: {message}"]
                )
                continue
            failures.extend(self._failures(svrl))
        return failures

    def _failures(self, svrl: str) -> list[list[str]]:
        """Failed asserts (no flag means fatal: the EN 16931 stylesheet drops
        it) and successful reports (Factur-X "not used" notes: warnings)."""
        root = self._etree.fromstring(svrl.encode("utf-8"))
        found: list[list[str]] = []
        for element in root.iter(f"{{{SVRL}}}failed-assert", f"{{{SVRL}}}successful-report"):
            is_assert = element.tag == f"{{{SVRL}}}failed-assert"
            text_element = element.find(f"{{{SVRL}}}text")
            text = "" if text_element is None else "".join(text_element.itertext())
            found.append([
                element.get("id", ""),
                element.get("flag") or ("fatal" if is_assert else "warning"),
                element.get("location", ""),
                " ".join(text.split()),
            ])
        return found


def serve(specs: list[dict[str, str]], requests: IO[bytes], answers: IO[bytes]) -> int:
    try:
        engine = _Engine(specs)
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises
        write_frame(answers, ERROR, traceback.format_exc().encode("utf-8", "replace"))
        return 1
    ready = {"pid": os.getpid(), "compile_seconds": engine.compile_seconds,
             "saxon_version": engine.saxon_version}
    write_frame(answers, READY, json.dumps(ready).encode())
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        try:
            answer = OK, json.dumps(engine.check(request)).encode("utf-8")
        except _NotXml as error:
            answer = NOT_XML, str(error).encode("utf-8", "replace")
        except Exception as error:  # noqa: BLE001 - keep serving, the parent raises
            answer = ERROR, repr(error).encode("utf-8", "replace")
        write_frame(answers, *answer)


def main(argv: list[str]) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the parent
    # decides when this process ends (by closing stdin).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol gets a private copy of stdout; whatever else writes to
    # fd 1 (a print, Saxon itself) goes to stderr instead of corrupting it.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    specs: Any = json.loads(argv[0])
    return serve(specs, sys.stdin.buffer, answers)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
