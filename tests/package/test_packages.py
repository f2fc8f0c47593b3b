"""The deployable packages, built from the package index for both providers
(`deploy.package`, as `bin/package` does): every one within its provider's
limits, saxonche only in conformance-check, wheels only for the provider's
Linux; and each one works alone: in a clean interpreter (`python -S`: the
standard library and the unzipped package, nothing else) every handler
imports from its own package, the non-HTTP ones run against the test
PostgreSQL and moto server, and the api package issues, renders and archives
an invoice end to end, its conformance check answered over HTTP by the
conformance-check package served from another clean interpreter.

About four minutes: two builds (~1.5 min each on 2 shared cores, wheels from
pip's cache after the first run), then ~20 clean interpreters."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import clean
from deploy.contents import contents
from deploy.manifest import function
from deploy.package import LIMITS, ROOT, SCHEMATRON_ENGINE, sha256_of
from devstack.dispatcher import scheduled_event
from devstack.stack import LocalStack
from tests.builders import recent
from tests.fakes import FrozenClock
from tests.integration.web import WRITE, get, owner_with_key
from tests.package.conftest import PACKAGED, Packages

SAMPLE = Path(__file__).resolve().parents[1] / "unit" / "samples" / "valid_en16931.xml"
TOKEN = "conformance-token-package-test"
NAMES = [f.name for f in PACKAGED]

# Run inside a package: import the handler as the platform would, then list
# every loaded module that came from neither the package nor the standard
# library (there must be none).
IMPORT_HANDLER = """
import importlib, json, os, sys, sysconfig
root = os.getcwd()
handler, provider = {handler!r}, {provider!r}
if provider == "aws":
    module, attribute = handler.rsplit(".", 1)
    found = getattr(importlib.import_module(module), attribute)
else:  # Scaleway: the handler's folder appended to sys.path, the file imported by name
    path, attribute = handler.rsplit(".", 1)
    folder, _, name = path.rpartition("/")
    sys.path.append(os.path.join(root, folder))
    found = getattr(importlib.import_module(name), attribute)
assert callable(found), handler
stdlib = tuple({{sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}})
outside = sorted(str(getattr(m, "__file__", None)) for m in list(sys.modules.values())
                 if getattr(m, "__file__", None)
                 and not str(m.__file__).startswith((root, *stdlib)))
print(json.dumps({{"outside": outside}}))
"""


def _last_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _files_of(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*")}


# ---------------------------------------------------------------- what was built

@pytest.mark.parametrize("provider", ["aws", "scaleway"])
def test_every_package_fits_its_providers_limits(packages: Packages, provider: str) -> None:
    manifest = json.loads((packages.out[provider] / "manifest.json").read_text())
    assert manifest["provider"] == provider and manifest["python"] == "3.11"
    limits = LIMITS[provider]  # type: ignore[index]
    for name in NAMES:
        entry = manifest["functions"][name]
        archive = packages.out[provider] / f"{name}.zip"
        assert entry["zip_bytes"] == archive.stat().st_size
        assert entry["sha256"] == sha256_of(archive)
        with zipfile.ZipFile(archive) as opened:
            assert entry["unzipped_bytes"] == sum(i.file_size for i in opened.infolist())
        assert entry["unzipped_bytes"] <= limits.max_unzipped_bytes, name
        if limits.max_zip_bytes is not None:
            assert entry["zip_bytes"] <= limits.max_zip_bytes, name
        assert entry["fits"] and entry["problems"] == [], (name, entry["problems"])
        expected = function(name).aws_handler if provider == "aws" \
            else function(name).scaleway_handler
        assert entry["handler"] == expected


def test_saxonche_is_only_in_conformance_check(packages: Packages) -> None:
    for provider, folder in packages.out.items():
        for name in NAMES:
            with zipfile.ZipFile(folder / f"{name}.zip") as opened:
                engine = [n for n in opened.namelist()
                          if re.match(rf"(package/)?{SCHEMATRON_ENGINE}[./-]", n)]
            assert bool(engine) == (name == "conformance-check"), (provider, name)


def _wheel_tags(archive: Path) -> dict[str, list[str]]:
    """Each distribution's wheel tags, from the WHEEL files the zip holds."""
    tags: dict[str, list[str]] = {}
    with zipfile.ZipFile(archive) as opened:
        for name in opened.namelist():
            if name.endswith(".dist-info/WHEEL"):
                text = opened.read(name).decode()
                tags[name.split("/")[-2]] = re.findall(r"^Tag: (\S+)$", text, re.MULTILINE)
    return tags


def test_each_provider_gets_wheels_for_its_own_linux(packages: Packages) -> None:
    """AWS (glibc 2.26): manylinux up to 2_26; Scaleway (Alpine): musllinux,
    but conformance-check, which runs on glibc (saxonche has no musl wheel)."""
    for name in NAMES:
        for provider in ("aws", "scaleway"):
            libc = packages.built[provider][name].libc
            for dist, tags in _wheel_tags(packages.out[provider] / f"{name}.zip").items():
                platforms = {t.split("-")[2] for t in tags}
                if platforms == {"any"}:
                    continue
                if libc == "musl":
                    assert all(p.startswith("musllinux_1_") for p in platforms), (name, dist)
                else:
                    assert any(p.startswith("manylinux") for p in platforms), (name, dist)
                    levels = [int(m.group(1)) for p in platforms
                              if (m := re.match(r"manylinux_2_(\d+)_", p))]
                    legacy = {p for p in platforms if re.match(r"manylinux(1|2010|2014)_", p)}
                    assert legacy or min(levels) <= 26, (name, dist, platforms)


def test_both_providers_hold_the_same_distributions(packages: Packages) -> None:
    for name in NAMES:
        assert packages.built["aws"][name].distributions == \
            packages.built["scaleway"][name].distributions, name


def test_only_the_rendering_functions_hold_the_fonts(packages: Packages) -> None:
    for name in NAMES:
        fonts = any(p.suffix == ".ttf" for p in packages.unpacked["aws"][name].rglob("*.ttf"))
        assert fonts == (name in ("api", "issue-invoice")), name


# ---------------------------------------------------------------- each package alone

@pytest.mark.parametrize("name", NAMES)
def test_every_handler_imports_from_its_own_package_alone(packages: Packages,
                                                          name: str) -> None:
    spec = function(name)
    runs = [("aws", packages.unpacked["aws"][name], "", spec.aws_handler),
            ("scaleway", packages.twins[name], "package", spec.scaleway_handler)]
    for provider, tree, deps_dir, handler in runs:
        before = _files_of(tree)
        done = clean.run(tree, IMPORT_HANDLER.format(handler=handler, provider=provider),
                         deps_dir=deps_dir)
        assert _last_json(done)["outside"] == [], (provider, name)
        # Bytecode writes allowed this time: the shipped .pyc are valid as they
        # are, so nothing is compiled, nothing written.
        env = clean.environment(tree, deps_dir)
        env.pop("PYTHONDONTWRITEBYTECODE")
        again = subprocess.run(clean.command(IMPORT_HANDLER.format(handler=handler,
                                                                   provider=provider)),
                               cwd=tree, env=env, capture_output=True, text=True, timeout=300,
                               check=False)
        _last_json(again)
        assert _files_of(tree) == before, (provider, name, _files_of(tree) - before)


def test_the_conformance_check_answers_from_its_aws_package(packages: Packages) -> None:
    """handle_aws from its own package: saxonche's worker started from it too."""
    code = f"""
import base64, json
from functions.conformance_check import handle_aws
sample = open({str(SAMPLE)!r}, "rb").read()
print(json.dumps([handle_aws({{"xml_base64": base64.b64encode(sample).decode()}}, None),
                  handle_aws({{"xml_base64": base64.b64encode(b"<a><b></a>").decode()}}, None)]))
"""
    valid, not_xml = _last_json(clean.run(packages.unpacked["aws"]["conformance-check"], code))
    assert valid == {"failures": []}
    assert not_xml["error"] == "NotXml"


def test_without_saxonche_the_local_check_cannot_run(packages: Packages) -> None:
    """A package without the engine (api's) told to check locally: its worker
    cannot start, so the check says it cannot run rather than that all is well."""
    code = f"""
import json
from chalicelib.documents.schematron import SchematronUnavailable, invoice_failures
try:
    invoice_failures(open({str(SAMPLE)!r}, "rb").read())
    print(json.dumps("checked"))
except SchematronUnavailable as error:
    print(json.dumps(type(error).__name__))
"""
    assert _last_json(clean.run(packages.unpacked["aws"]["api"], code)) == \
        "SchematronUnavailable"


# ---------------------------------------------------------------- against the stack

@pytest.fixture(scope="module")
def conformance_url(packages: Packages) -> Iterator[str]:
    """The Scaleway conformance-check package (its container's entry, serve.py)
    served from a clean interpreter on loopback, behind a token."""
    tree = packages.unpacked["scaleway"]["conformance-check"]
    code = ("import runpy, sys; sys.argv = ['serve.py', 'functions/conformance_check.handle'];"
            " runpy.run_path('serve.py', run_name='__main__')")
    env = clean.environment(tree, "package", {"PORT": "0", "SERVE_HOST": "127.0.0.1",
                                              "SERVE_AUTH_TOKEN": TOKEN})
    server = subprocess.Popen(clean.command(code), cwd=tree, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        ready, _, _ = select.select([server.stdout], [], [], 60)
        line = server.stdout.readline() if ready else ""
        match = re.search(r"on port (\d+)", line)
        assert match, (line, server.poll())
        yield f"http://127.0.0.1:{match.group(1)}/"
    finally:
        server.terminate()
        server.wait(10)


def _function_env(stack: LocalStack, conformance_url: str, token: str = TOKEN,
                  **extra: str) -> dict[str, str]:
    return {**stack.env(), "EINVOICE_CONFORMANCE_CHECK": conformance_url,
            "EINVOICE_CONFORMANCE_CHECK_TOKEN": token, "EINVOICE_PASSWORD_TIME_COST": "1",
            "EINVOICE_PASSWORD_MEMORY_KIB": "1024", "EINVOICE_PASSWORD_PARALLELISM": "1",
            "AWS_DEFAULT_REGION": "eu-west-3", **extra}


CONTEXT = """
import time, uuid
class Context:
    function_name = "package-test"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:eu-west-3:000000000000:function:package-test"
    aws_request_id = str(uuid.uuid4())
    _ends = time.monotonic() + 120
    def get_remaining_time_in_millis(self):
        return int((self._ends - time.monotonic()) * 1000)
"""

ISSUE_ON_AWS = CONTEXT + """
import base64, importlib.util, json, uuid
import app
from chalicelib import runtime
from chalicelib.adapters.conformance import HttpConformanceCheck
assert importlib.util.find_spec("saxonche") is None  # the check can only be remote
assert isinstance(runtime.conformance_check(), HttpConformanceCheck)

def gateway(method, path, resource, params, headers, body=None):
    return {{"httpMethod": method, "path": path, "resource": resource,
             "headers": headers, "multiValueQueryStringParameters": None,
             "pathParameters": params, "stageVariables": {{}}, "body": body,
             "isBase64Encoded": False,
             "requestContext": {{"httpMethod": method, "resourcePath": resource, "path": path,
                                "requestId": str(uuid.uuid4()),
                                "identity": {{"sourceIp": "127.0.0.1"}}}}}}

auth = {{"authorization": "Bearer " + {secret!r}}}
created = app.app(gateway("POST", "/invoices", "/invoices", None,
                          {{**auth, "content-type": "application/json",
                            "idempotency-key": {key!r}}}, {body!r}), Context())
result = {{"status": created["statusCode"], "body": json.loads(created["body"])}}
if created["statusCode"] == 201:
    invoice_id = result["body"]["id"]
    pdf = app.app(gateway("GET", f"/invoices/{{invoice_id}}/pdf", "/invoices/{{invoice_id}}/pdf",
                          {{"invoice_id": invoice_id}}, {{**auth, "accept": "application/pdf"}}),
                  Context())
    data = base64.b64decode(pdf["body"]) if pdf.get("isBase64Encoded") else pdf["body"].encode()
    from facturx import get_xml_from_pdf
    result["pdf_status"] = pdf["statusCode"]
    result["pdf_head"] = data[:8].decode("latin-1")
    result["embedded_xml"] = get_xml_from_pdf(data, check_xsd=False)[0]
print(json.dumps(result))
"""


def test_the_api_package_issues_renders_and_archives_an_invoice(
        packages: Packages, stack: LocalStack, client: Any, frozen: FrozenClock,
        conformance_url: str) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    code = ISSUE_ON_AWS.format(secret=key["secret"], key="package-1", body=json.dumps(recent()))
    result = _last_json(clean.run(packages.unpacked["aws"]["api"], code,
                                  extra=_function_env(stack, conformance_url)))
    assert result["status"] == 201, result
    assert result["body"]["invoice_number"] == "F-000001"
    assert [o["kind"] for o in result["body"]["archive"]["objects"]] == ["pdf", "xml"]
    assert result["pdf_status"] == 200 and result["pdf_head"].startswith("%PDF-1.7")
    assert result["embedded_xml"] == "factur-x.xml"
    # What the suite's own process reads back: the same invoice, archived.
    listed = get(client, key["secret"], "/invoices").json_body["invoices"]
    assert [i["invoice_number"] for i in listed] == ["F-000001"]


def test_with_a_wrong_token_the_api_package_answers_503_and_issues_nothing(
        packages: Packages, stack: LocalStack, client: Any, frozen: FrozenClock,
        conformance_url: str) -> None:
    _, key = owner_with_key(client, frozen, WRITE)
    code = ISSUE_ON_AWS.format(secret=key["secret"], key="package-2", body=json.dumps(recent()))
    result = _last_json(clean.run(packages.unpacked["aws"]["api"], code,
                                  extra=_function_env(stack, conformance_url, token="wrong")))
    assert result["status"] == 503, result
    assert get(client, key["secret"], "/invoices").json_body["invoices"] == []


def test_the_scaleway_api_layout_issues_an_invoice(
        packages: Packages, stack: LocalStack, client: Any, frozen: FrozenClock,
        conformance_url: str) -> None:
    """functions/api.handle, loaded as Scaleway's runtime loads it, from the
    Scaleway package's own files (distributions: the glibc twin)."""
    _, key = owner_with_key(client, frozen, WRITE)
    code = f"""
import json, os, sys
sys.path.append(os.path.join(os.getcwd(), "functions"))
from api import handle
answer = handle({{"httpMethod": "POST", "path": "/invoices", "isBase64Encoded": False,
                 "headers": {{"Authorization": "Bearer {key['secret']}",
                             "Content-Type": "application/json", "Idempotency-Key": "scw-1",
                             "X-Forwarded-For": "51.158.1.2"}},
                 "queryStringParameters": {{}}, "body": {json.dumps(recent())!r},
                 "requestContext": {{"resourcePath": ""}}}}, {{}})
print(json.dumps({{"status": answer["statusCode"], "body": json.loads(answer["body"])}}))
"""
    result = _last_json(clean.run(packages.twins["api"], code, deps_dir="package",
                                  extra=_function_env(stack, conformance_url)))
    assert result["status"] == 201, result
    assert result["body"]["invoice_number"] == "F-000001"


def _sqs(body: str) -> dict[str, Any]:
    return {"Records": [{"messageId": "m-1", "receiptHandle": "r-1", "body": body,
                         "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                         "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:eu-west-3:000000000000:q",
                         "awsRegion": "eu-west-3"}]}


def test_the_other_handlers_run_from_their_own_packages(
        packages: Packages, stack: LocalStack, client: Any, frozen: FrozenClock,
        conformance_url: str) -> None:
    """Each non-HTTP function's AWS handler, called with its event on the
    stack from its own package: every import its use case makes is there."""
    owner, key = owner_with_key(client, frozen, WRITE)
    tenant = owner.body["tenant_id"]
    ledger = json.dumps({"tenant_id": tenant, "kind": "note.added",
                         "idempotency_key": "package-ledger-1",
                         "payload": {"number": "X-1", "total_gross": "1.00", "currency": "EUR"}})
    queued = json.dumps({"tenant_id": tenant, "idempotency_key": "package-queue-1",
                         "invoice": recent()})
    calls: dict[str, tuple[str, Any]] = {
        "health": ("functions.health.handler", {}),
        "append-ledger": ("app.append_ledger_entries", _sqs(ledger)),
        "issue-invoice": ("app.issue_queued_invoices", _sqs(queued)),
        "retention-purge": ("app.retention_purge", scheduled_event("retention", "eu-west-3")),
        "scheduled-closings": ("app.scheduled_closings",
                               scheduled_event("closings", "eu-west-3")),
        "anchor-retries": ("app.anchor_retries", scheduled_event("anchors", "eu-west-3")),
        "archive-sweep": ("app.archive_sweep", scheduled_event("sweep", "eu-west-3")),
    }
    answers = {}
    for name, (handler, event) in calls.items():
        if name not in NAMES:
            continue
        assert function(name).aws_handler == handler
        module, attribute = handler.rsplit(".", 1)
        code = CONTEXT + f"""
import importlib, json
handler = getattr(importlib.import_module({module!r}), {attribute!r})
print(json.dumps(handler(json.loads({json.dumps(event)!r}), Context())))
"""
        answers[name] = _last_json(clean.run(packages.unpacked["aws"][name], code,
                                             extra=_function_env(stack, conformance_url)))
    assert answers["health"]["statusCode"] == 200
    assert answers["append-ledger"] == {"batchItemFailures": []}
    assert answers["issue-invoice"] == {"batchItemFailures": []}
    assert set(answers["retention-purge"]) and set(answers["archive-sweep"]) == {"archived",
                                                                                  "failed"}
    assert isinstance(answers["scheduled-closings"], dict)
    assert answers["anchor-retries"] == {"anchors": 0, "closings": 0}
    issued = get(client, key["secret"], "/invoices").json_body["invoices"]
    assert [i["invoice_number"] for i in issued] == ["F-000001"]


def test_every_declared_distribution_is_in_its_package(packages: Packages) -> None:
    """What deploy/contents.py declares is what the manifest lists (with the
    distributions they bring), on both providers."""
    for name in NAMES:
        listed = {d.split("==")[0] for d in packages.built["aws"][name].distributions}
        declared = {d.lower() for d in contents(function(name)).distributions}
        assert declared <= listed, (name, declared - listed)


def test_the_build_is_reproducible(packages: Packages, tmp_path: Path) -> None:
    """The same sources and pins give the same bytes (Terraform sees a change
    only when there is one)."""
    from deploy.package import build

    again = build("aws", tmp_path / "aws", only=["health"])
    assert again[0].sha256 == packages.built["aws"]["health"].sha256
    assert os.path.getsize(tmp_path / "aws" / "health.zip") == \
        packages.built["aws"]["health"].zip_bytes


def test_the_cold_start_benchmark_runs_quick(packages: Packages) -> None:
    """Not a timing: bench/cold_start.py --quick still measures every packaged
    function and prints its ratios (docs/benchmarks.md#cold-start)."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "cold_start.py"), "--quick",
                           "--dist", str(packages.out["aws"])], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in NAMES:
        assert re.search(rf"^{name}: handler \d+ ms \(\d+\.\d\dx\), first use \d+ ms, bare deps "
                         rf"\d+ ms: ratio \d+\.\d\dx \(target .*: (met|MISSED)\)$", done.stdout,
                         re.MULTILINE), (name, done.stdout)
    assert re.search(r"^targets missed: ", done.stdout, re.MULTILINE)


def test_each_package_gets_an_sbom_of_exactly_what_it_holds(packages: Packages,
                                                            tmp_path: Path) -> None:
    """The SBOM lists the distributions found in the zip itself, at the locked
    versions with the lock's hashes (two packages: the check is the same)."""
    from packaging.utils import canonicalize_name

    from deploy.package import write_sboms, zip_distributions
    from deploy.supply_chain import sbom_components

    out = packages.out["aws"]
    chosen = [packages.built["aws"][name] for name in ("health", "conformance-check")]
    for zipped in chosen:  # a copy: the fixture's folder is shared
        (tmp_path / f"{zipped.name}.zip").write_bytes((out / f"{zipped.name}.zip").read_bytes())
    written = write_sboms(tmp_path, chosen, lock=ROOT / "requirements.lock")
    for zipped, sbom in zip(chosen, written, strict=True):
        components = sbom_components(sbom)
        listed = {name: item["version"] for name, item in components.items()}
        held = {canonicalize_name(name): version for name, version
                in zip_distributions(tmp_path / f"{zipped.name}.zip").items()}
        assert listed == held and held
        assert all(item["hashes"] for item in components.values())
    assert "saxonche" in json.loads(written[1].read_text())["components"].__repr__()
    assert "saxonche" not in written[0].read_text()


def test_packaging_refuses_to_build_when_the_audit_blocks(tmp_path: Path) -> None:
    from deploy.package import audit_before_build

    old = tmp_path / "old.lock"
    old.write_text("cryptography==41.0.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert audit_before_build(offline_audit=True, locks=(old,)) is False
    assert audit_before_build(offline_audit=True) is True
