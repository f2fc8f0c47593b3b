"""Cold-start benchmark (docs/benchmarks.md#cold-start): for each function, the
imports of a cold start from its own unzipped package, as a ratio to the bare
import of that function's third-party distributions, measured in the same run.

    .venv/bin/python bench/cold_start.py                   # builds dist/aws first, 7 runs
    .venv/bin/python bench/cold_start.py --dist dist/aws   # packages already built
    .venv/bin/python bench/cold_start.py --quick --dist D  # 1 run: only checks it works

Each figure is the minimum over N fresh interpreters (`python -S`, the
standard library and the package only: deploy/clean.py), the package folder
read-only and PYTHONDONTWRITEBYTECODE=1, so nothing is cached but the
bytecode the package ships. Interpreter start-up is left out; the clock runs
from the first import to the last. Per function:
  handler    import the handler's module and fetch the handler (what the
             platform's init does);
  first use  the handler, then the modules its use case imports on its first
             invocation before any I/O (FIRST_USE below): what a cold request
             pays in imports;
  bare deps  import the top-level modules of the function's distributions
             (deploy/contents.py), nothing of ours: the baseline.
Rounds alternate the three, so a noisy neighbour weighs on all.
Targets: the invoice functions (api, issue-invoice) first use <= 900 ms;
every other function first use <= 300 ms and <= 1.5x its bare deps.
Not a test: it prints figures and says which target is missed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy import clean
from deploy.contents import contents
from deploy.manifest import FUNCTIONS, Function
from deploy.package import build, normalise

INVOICE_FUNCTIONS = ("api", "issue-invoice")
INVOICE_TARGET_MS = 900.0
OTHER_TARGET_MS = 300.0
OTHER_TARGET_RATIO = 1.5

# What each use case imports on its first invocation, before any I/O (the
# imports inside the route, the schedule and the runtime factories it calls).
_POSTGRES = ("chalicelib.adapters.postgres",)
# Where sealed fields are read or written (staged documents, TOTP secrets).
_SEALED = ("chalicelib.adapters.keys", "chalicelib.usecases.field_encryption")
_ARCHIVE = ("chalicelib.adapters.archive", "chalicelib.adapters.aws")
_ISSUING = ("chalicelib.usecases.issue_invoice", "chalicelib.adapters.documents",
            "chalicelib.adapters.conformance", *_POSTGRES, *_SEALED, *_ARCHIVE)
FIRST_USE: dict[str, tuple[str, ...]] = {
    "api": ("chalicelib.entrypoints.access_log", "chalicelib.entrypoints.invoices", *_ISSUING),
    "health": ("chalicelib.usecases.health", *_POSTGRES, "chalicelib.adapters.aws"),
    "conformance-check": (),  # its first check starts the worker: a process, not an import
    "append-ledger": ("chalicelib.entrypoints.ledger_queue", "chalicelib.usecases.append_ledger",
                      *_POSTGRES),
    "issue-invoice": ("chalicelib.entrypoints.invoice_queue", *_ISSUING),
    "retention-purge": ("chalicelib.entrypoints.schedules", "chalicelib.usecases.retention",
                        *_POSTGRES),
    "scheduled-closings": ("chalicelib.entrypoints.schedules", "chalicelib.usecases.seal_period",
                           "chalicelib.usecases.witness", "chalicelib.adapters.signing",
                           *_POSTGRES, *_ARCHIVE),
    "anchor-retries": ("chalicelib.entrypoints.schedules", "chalicelib.usecases.anchor",
                       "chalicelib.adapters.anchoring", *_POSTGRES),
    "archive-sweep": ("chalicelib.entrypoints.schedules", "chalicelib.usecases.archive_invoice",
                      *_POSTGRES, *_SEALED, *_ARCHIVE),
    "migrate": ("chalicelib.migrate",),
}

_TIMED = """
import importlib, json, time
started = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
{handler}
print(json.dumps({{"seconds": time.perf_counter() - started,
                   "modules": len(__import__("sys").modules)}}))
"""


def top_level_modules(package: Path, distributions: tuple[str, ...]) -> list[str]:
    """The importable top-level modules of these distributions in the package
    (from each one's RECORD: its first-level packages and modules)."""
    wanted = {normalise(name) for name in distributions}
    found: set[str] = set()
    for info in package.glob("*.dist-info"):
        name = normalise(info.name[: -len(".dist-info")].rsplit("-", 1)[0])
        if name not in wanted:
            continue
        for line in (info / "RECORD").read_text(encoding="utf-8").splitlines():
            first = line.split(",", 1)[0].split("/", 1)
            top = first[0]
            if top.endswith(".dist-info") or top.startswith(("..", "__")) or \
                    top.endswith((".libs", ".pth")):
                continue
            if len(first) == 2 and first[1] == "__init__.py":
                found.add(top)
            elif len(first) == 1 and top.endswith(".py"):
                found.add(top[:-3])
    return sorted(found)


def _handler_code(handler: str) -> str:
    module, attribute = handler.rsplit(".", 1)
    return f"getattr(importlib.import_module({module!r}), {attribute!r})"


def timed(package: Path, modules: list[str], handler: str | None) -> float:
    code = _TIMED.format(modules=modules, handler=_handler_code(handler) if handler else "")
    done = clean.run(package, code, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{package.name}: {done.stderr[-2000:]}")
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def measure(function: Function, package: Path, runs: int) -> dict[str, float]:
    bare = top_level_modules(package, contents(function).distributions)
    first_use = list(FIRST_USE[function.name])
    best = {"handler": float("inf"), "first use": float("inf"), "bare deps": float("inf")}
    for _ in range(runs):
        best["bare deps"] = min(best["bare deps"], timed(package, bare, None))
        best["handler"] = min(best["handler"], timed(package, [], function.aws_handler))
        best["first use"] = min(best["first use"],
                                timed(package, [], function.aws_handler) if not first_use
                                else timed(package, first_use, function.aws_handler))
    return best


def verdict(name: str, best: dict[str, float]) -> tuple[bool, str]:
    ms = best["first use"] * 1000
    ratio = best["first use"] / best["bare deps"]
    if name in INVOICE_FUNCTIONS:
        return ms <= INVOICE_TARGET_MS, f"target first use <= {INVOICE_TARGET_MS:.0f} ms"
    met = ms <= OTHER_TARGET_MS and ratio <= OTHER_TARGET_RATIO
    return met, f"target <= {OTHER_TARGET_MS:.0f} ms and <= {OTHER_TARGET_RATIO}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run: only checks it works")
    parser.add_argument("--dist", type=Path, help="the AWS packages (default: build them)")
    parser.add_argument("--runs", type=int, help="fresh interpreters per figure (default 7)")
    parser.add_argument("--only", action="append", help="this function only (repeatable)")
    args = parser.parse_args(argv)
    runs = args.runs or (1 if args.quick else 7)
    scratch = Path(tempfile.mkdtemp(prefix="einvoice-cold-start-"))
    try:
        dist = args.dist
        if dist is None:
            dist = scratch / "aws"
            build("aws", dist)
        chosen = [f for f in FUNCTIONS if (dist / f"{f.name}.zip").is_file()
                  and (args.only is None or f.name in args.only)]
        print(f"cold start from each function's own package ({dist}), python -S, read-only, "
              f"no bytecode writes; min of {runs} fresh interpreter(s)")
        missed = []
        for function in chosen:
            package = clean.unpack(dist / f"{function.name}.zip", scratch / function.name)
            best = measure(function, package, runs)
            met, target = verdict(function.name, best)
            if not met:
                missed.append(function.name)
            print(f"{function.name}: handler {best['handler'] * 1000:.0f} ms "
                  f"({best['handler'] / best['bare deps']:.2f}x), first use "
                  f"{best['first use'] * 1000:.0f} ms, bare deps "
                  f"{best['bare deps'] * 1000:.0f} ms: ratio "
                  f"{best['first use'] / best['bare deps']:.2f}x ({target}: "
                  f"{'met' if met else 'MISSED'})")
        print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    finally:
        clean.make_writable(scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
