"""What each function's package holds: its third-party distributions and the
project code it imports, nothing else.

Derived from what each handler really imports, its trigger's use case
included (the imports inside functions and runtime factories): a smaller set
would fail the package test (tests/package/), which imports every handler from
its own package in a clean interpreter and issues an invoice end to end from
the api package. The names are those of requirements.txt, which pins them;
pip brings their own dependencies.

Why the sets differ:
- saxonche (the schematron engine, 114 MB) only in conformance-check: issuing
  calls it over HTTP or Lambda invoke (CONFORMANCE_CHECK), never in process;
- the Factur-X libraries (factur-x, lxml, ReportLab, Pillow, pypdf) and the
  invoice model's identifier checks (schwifty, which brings pycountry, and
  python-stdnum) only where invoices are rendered: api and issue-invoice;
- passwords and TOTP (argon2-cffi, pyotp) only in api (the HTTP routes);
- anchoring (opentimestamps, python-bitcoinlib, pycryptodomex, rfc3161-client)
  where anchors are made: api (after POST /closings) and anchor-retries;
- pydantic (MODELS) only where request bodies, queue messages or invoice
  drafts are parsed: api, append-ledger, issue-invoice;
- the rest share BASE: logs, PostgreSQL, the field cipher and the closing
  signer, ledger hashing, and boto3 (object store, queues, and the provider
  services the settings select).
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.manifest import FUNCTIONS, Function

BASE = ("aws-lambda-powertools", "pg8000", "cryptography", "rfc8785", "boto3")
# Request bodies, queue messages and invoice drafts are pydantic models; the
# settings are not, so schedules, health and the migration job go without it.
MODELS = ("pydantic",)
PASSWORDS = ("argon2-cffi", "pyotp")
ANCHORING = ("opentimestamps", "python-bitcoinlib", "pycryptodomex", "rfc3161-client")
DOCUMENTS = ("factur-x", "lxml", "reportlab", "pillow", "pypdf", "schwifty", "python-stdnum")
# The schematron worker needs lxml and saxonche; the stylesheets it compiles
# ship inside the factur-x distribution (located, never imported).
CONFORMANCE = ("saxonche", "lxml", "factur-x", "aws-lambda-powertools")

# Project code, as globs relative to the repository root.
CORE = ("chalicelib/__init__.py", "chalicelib/config.py", "chalicelib/secret.py",
        "chalicelib/logs.py",
        "chalicelib/ports.py", "chalicelib/runtime.py", "chalicelib/metrics.py",
        "chalicelib/domain/*.py",
        "chalicelib/usecases/*.py", "chalicelib/adapters/*.py",
        "chalicelib/adapters/postgres/*.py", "chalicelib/entrypoints/*.py")
RENDERING = ("chalicelib/documents/*.py", "chalicelib/documents/fonts/*")
MIGRATIONS = ("chalicelib/migrate.py", "chalicelib/migrations/*.sql")
# What the schematron worker and the conformance-check handler import.
CHECKER = ("chalicelib/__init__.py", "chalicelib/logs.py", "chalicelib/domain/__init__.py",
           "chalicelib/domain/errors.py", "chalicelib/documents/__init__.py",
           "chalicelib/documents/schematron.py", "chalicelib/documents/schematron_worker.py")


@dataclass(frozen=True)
class Contents:
    distributions: tuple[str, ...]  # requirement names, as in requirements.txt
    project: tuple[str, ...]  # globs of project files
    chalice_runtime: bool  # app.py and Chalice's runtime module (chalice/__init__.py, app.py)


def _handlers_modules(function: Function) -> tuple[str, ...]:
    """The functions/ modules a function's two handlers live in."""
    modules = {"functions/__init__.py", function.scaleway_handler.rsplit(".", 1)[0] + ".py"}
    aws_module = function.aws_handler.rsplit(".", 1)[0]
    if aws_module.startswith("functions."):
        modules.add(aws_module.replace(".", "/") + ".py")
    return tuple(sorted(modules))


def _uses_app(function: Function) -> bool:
    """app.py is the AWS handler, or the Scaleway HTTP adapter serves it."""
    return function.aws_handler.startswith("app.") or function.name == "api"


_SETS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "api": (BASE + MODELS + PASSWORDS + ANCHORING + DOCUMENTS, CORE + RENDERING),
    "health": (BASE, CORE),
    "conformance-check": (CONFORMANCE, CHECKER),
    "append-ledger": (BASE + MODELS, CORE),
    "issue-invoice": (BASE + MODELS + DOCUMENTS, CORE + RENDERING),
    "retention-purge": (BASE, CORE),
    "scheduled-closings": (BASE, CORE),
    "anchor-retries": (BASE + ANCHORING, CORE),
    "archive-sweep": (BASE, CORE),
    "migrate": (BASE, CORE + MIGRATIONS),
}


def contents(function: Function) -> Contents:
    """What `function`'s package holds; KeyError for a function nobody declared."""
    distributions, project = _SETS[function.name]
    return Contents(distributions=tuple(dict.fromkeys(distributions)),
                    project=tuple(dict.fromkeys(project + _handlers_modules(function))),
                    chalice_runtime=_uses_app(function))


def undeclared() -> list[str]:
    """Functions of the manifest with no declared contents (a test keeps this empty)."""
    return [f.name for f in FUNCTIONS if f.name not in _SETS]
