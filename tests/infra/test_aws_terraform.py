"""infra/aws/ against what it deploys: the manifest, app.py's triggers, the code's
bucket prefixes, secrets and settings. Terraform cannot plan here (no provider,
no account), so the configuration is read with python-hcl2 and checked for
what matters: every function and trigger exists as the app declares it, every
role is least privilege, the archive is locked and its policy refuses what it
must, the database is private, no secret is a plain environment value. Then
`terraform fmt` (where the binary is) and checkov (always) read it too."""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, fields
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import hcl2
import pytest
from hcl2.utils import SerializationOptions

from chalicelib.config import Settings
from chalicelib.domain.witness import witness_key
from chalicelib.entrypoints.guard import SECURITY_HEADERS
from deploy.manifest import FUNCTIONS, function
from infra.aws import openapi
from infra.aws.contract_settings import NEW_SETTINGS, OTHER_PROVIDER_SECRETS, SECRET_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
AWS = ROOT / "infra" / "aws"
SCALEWAY = ROOT / "infra" / "scaleway"
CHECKOV_CONFIG = ROOT / "infra" / ".checkov.yaml"
_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False,
                                with_comments=False)
_LOCAL = re.compile(r"\$\{local\.([a-z_]+)\}")
MANIFEST = {f.name: f for f in FUNCTIONS}


@dataclass(frozen=True)
class Terraform:
    resources: dict[str, dict[str, Any]]
    data: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    variables: dict[str, Any]
    text: str  # every .tf file, for what only the source shows


@functools.cache
def tf() -> Terraform:
    resources: dict[str, dict[str, Any]] = {}
    data: dict[str, dict[str, Any]] = {}
    local_values: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    texts = []
    for path in sorted(AWS.glob("*.tf")):
        texts.append(path.read_text(encoding="utf-8"))
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=_OPTIONS)
        for kind, into in (("resource", resources), ("data", data)):
            for block in parsed.get(kind, []):
                for type_, named in block.items():
                    for name, body in named.items():
                        assert name not in into.setdefault(type_, {}), f"{type_}.{name} twice"
                        into[type_][name] = body
        for block in parsed.get("locals", []):
            for name, value in block.items():
                assert name not in local_values, f"local.{name} twice"
                local_values[name] = value
        for block in parsed.get("variable", []):
            variables.update(block)
    return Terraform(resources, data, local_values, variables, "\n".join(texts))


def resource(type_: str, name: str) -> Any:
    return tf().resources[type_][name]


def block(body: Any, name: str) -> Any:
    """The one nested block `name` of a parsed body."""
    (found,) = body[name]
    return found


def resolve(value: Any) -> Any:
    """`${local.x}` replaced by local.x, everywhere in value."""
    if isinstance(value, str) and (match := _LOCAL.fullmatch(value)):
        return resolve(tf().locals[match.group(1)])
    if isinstance(value, list):
        return [resolve(v) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v) for k, v in value.items()}
    return value


def capabilities(name: str) -> list[str]:
    found: list[str] = tf().locals["functions"][name]["capabilities"]
    return found


def statements(name: str) -> list[dict[str, Any]]:
    """Every capability statement of the function's role, the archive purge's
    as if turned on (the most that role can ever be given)."""
    found: list[dict[str, Any]] = []
    for capability in capabilities(name):
        value = tf().locals["statements_of_capability"][capability]
        if capability == "archive_purge":
            assert value == ("${[for statement in local.archive_purge_statements : "
                             "statement if var.archive_purge_enabled]}")
            value = tf().locals["archive_purge_statements"]
        found += resolve(value)
    return found


def allowed(action: str, resource_part: str = "") -> set[str]:
    """The functions whose role allows `action` on a resource containing `resource_part`."""
    return {name for name in MANIFEST for s in statements(name)
            if action in s["Action"] and any(resource_part in r for r in s["Resource"])}


def environment(name: str) -> dict[str, str]:
    """The function's environment as functions.tf merges it (empty values dropped)."""
    merged = dict(tf().locals["environment_common"])
    for capability in capabilities(name):
        merged.update(tf().locals["environment_of_capability"][capability])
    return {k: v for k, v in merged.items() if v != ""}


def secrets(name: str) -> set[str]:
    """The Secrets Manager secrets (resource names) the function's role may read."""
    found = set()
    for capability in capabilities(name):
        granted = tf().locals["secrets_of_capability"].get(capability, [])
        # A list of ARNs, or an expression choosing one (the SMTP password,
        # only for a relay that logs in): the most it can grant.
        for value in [granted] if isinstance(granted, str) else granted:
            found |= set(re.findall(r"aws_secretsmanager_secret\.(\w+)\.arn", value))
    return found


# -- the configuration hangs together (terraform validate cannot run here) -------------------

def test_every_reference_names_something_declared() -> None:
    text = re.sub(r"#[^\n]*", "", tf().text)  # not the comments
    data = {f"{t}.{n}" for t, named in tf().data.items() for n in named}
    resources = {f"{t}.{n}" for t, named in tf().resources.items() for n in named}
    for kind, name in re.findall(r"\b(var|local)\.([a-z0-9_]+)", text):
        assert name in (tf().variables if kind == "var" else tf().locals), f"{kind}.{name}"
    for ref in re.findall(r"\bdata\.([a-z0-9_]+\.[a-z0-9_]+)", text):
        assert ref in data, ref
    for ref in re.findall(r"(?<![.\w])((?:aws|random)_[a-z0-9_]+\.[a-z0-9_]+)", text):
        assert ref in resources, ref
    # Every declared variable is used.
    assert {v for v in tf().variables if f"var.{v}" not in text} == set()


# -- every function of the manifest --------------------------------------------------------

def test_every_manifest_function_has_its_lambda_function_as_the_manifest_says() -> None:
    functions = tf().locals["functions"]
    assert set(functions) == set(MANIFEST)
    for name, f in MANIFEST.items():
        assert functions[name]["handler"] == f.aws_handler, name
        assert functions[name]["trigger"] == f.trigger, name
        assert functions[name]["timeout"] == f.timeout_seconds, name
        assert functions[name]["memory"] == f.memory_mb, name
    assert tf().locals["function_names"] == "${{for name, _ in local.functions : " \
        "name => \"${var.name_prefix}-${name}\"}}"

    fn = resource("aws_lambda_function", "fn")
    assert fn["for_each"] == "${local.functions}"
    assert fn["handler"] == "${each.value.handler}"
    assert fn["timeout"] == "${each.value.timeout}"
    assert fn["memory_size"] == "${each.value.memory}"
    assert fn["runtime"] == "python3.11" and fn["architectures"] == ["x86_64"]
    assert fn["role"] == "${aws_iam_role.fn[each.key].arn}"
    assert block(fn, "environment")["variables"] == "${local.function_environment[each.key]}"
    assert block(fn, "vpc_config") == {"subnet_ids": "${aws_subnet.private[*].id}",
                                       "security_group_ids": ["${aws_security_group.functions.id}"]}


def test_every_package_is_uploaded_through_s3_and_pinned_by_its_hash() -> None:
    package = resource("aws_s3_object", "package")
    assert package["for_each"] == "${local.functions}"
    assert package["bucket"] == "${aws_s3_bucket.artifacts.id}"
    assert package["source"] == "${var.package_dir}/${each.key}.zip"
    assert package["source_hash"] == '${filemd5("${var.package_dir}/${each.key}.zip")}'
    fn = resource("aws_lambda_function", "fn")
    assert fn["s3_bucket"] == "${aws_s3_object.package[each.key].bucket}"
    assert fn["s3_key"] == "${aws_s3_object.package[each.key].key}"
    assert fn["s3_object_version"] == "${aws_s3_object.package[each.key].version_id}"
    assert fn["source_code_hash"] == '${filebase64sha256("${var.package_dir}/${each.key}.zip")}'
    assert tf().variables["package_dir"]["default"] == "../../dist/aws"


# -- every trigger of app.py ---------------------------------------------------------------

def _cron_values(field: str, low: int, high: int) -> set[int]:
    """The values a UNIX or EventBridge cron field stands for."""
    values: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = int(base)
            end = high if step else start
        values |= set(range(start, end + 1, int(step or 1)))
    return values


def test_the_cron_reader_reads_both_syntaxes() -> None:
    assert _cron_values("7-59/15", 0, 59) == _cron_values("7/15", 0, 59) == {7, 22, 37, 52}
    assert _cron_values("*/10", 0, 59) == _cron_values("0/10", 0, 59) == set(range(0, 60, 10))
    assert _cron_values("5", 0, 59) == {5} and _cron_values("*", 0, 23) == set(range(24))


def test_every_schedule_of_app_py_is_an_eventbridge_rule_at_the_manifests_time() -> None:
    from chalice.app import ScheduledEventConfig

    from app import app

    scheduled = {e.name: e for e in app.event_sources if isinstance(e, ScheduledEventConfig)}
    schedules = tf().locals["schedules"]
    assert set(schedules) == {f.name for f in FUNCTIONS if f.trigger == "schedule"}
    for name, entry in schedules.items():
        f = function(name)
        (trigger,) = f.app_triggers
        aws = entry["expression"]
        declared = scheduled[trigger].schedule_expression
        assert aws == (declared if isinstance(declared, str) else declared.to_string()), name
        assert f.cron is not None
        unix = f.cron.split()
        fields = aws.removeprefix("cron(").removesuffix(")").split()
        assert _cron_values(fields[0], 0, 59) == _cron_values(unix[0], 0, 59), name
        assert _cron_values(fields[1], 0, 23) == _cron_values(unix[1], 0, 23), name
        assert unix[2:] == ["*", "*", "*"] and fields[2:] == ["*", "*", "?", "*"], name
        # A silence alarm never shorter than the time between two runs.
        minutes = sorted(_cron_values(unix[0], 0, 59))
        hours = len(_cron_values(unix[1], 0, 23))
        gap = 86400 if hours == 1 else 3600 * 24 // hours if len(minutes) == 1 \
            else 60 * max(b - a for a, b in zip(minutes, [*minutes[1:], minutes[0] + 60],
                                                strict=True))
        assert entry["silence_alarm_seconds"] >= gap, name

    rule = resource("aws_cloudwatch_event_rule", "schedule")
    assert rule["for_each"] == "${local.schedules}"
    assert rule["schedule_expression"] == "${each.value.expression}"
    target = resource("aws_cloudwatch_event_target", "schedule")
    assert target["arn"] == "${aws_lambda_function.fn[each.key].arn}"
    permission = resource("aws_lambda_permission", "schedule")
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["source_arn"] == "${aws_cloudwatch_event_rule.schedule[each.key].arn}"
    assert permission["function_name"] == "${aws_lambda_function.fn[each.key].function_name}"


def test_every_queue_of_app_py_feeds_its_function_with_its_batch_size() -> None:
    from chalice.app import SQSEventConfig

    from app import app

    consumed = [e for e in app.event_sources if isinstance(e, SQSEventConfig)]
    queues = tf().locals["queues"]
    assert len(consumed) == len(queues) == 2
    defaults = {setting.name: setting for setting in fields(Settings)}
    for event in consumed:
        (f,) = [f for f in FUNCTIONS if event.name in f.app_triggers]
        assert f.trigger == "queue" and f.queue_setting is not None
        (key,) = [k for k, q in queues.items() if q["consumer"] == f.name]
        assert queues[key]["batch_size"] == event.batch_size
        assert queues[key]["setting"] == f"EINVOICE_{f.queue_setting.upper()}"
        # The queue is named as the setting's default, under the prefix.
        default = str(defaults[f.queue_setting].default)
        assert event.queue == default
        name = resolve(queues[key]["name"])
        assert name == "${var.name_prefix}-" + default.removeprefix("einvoice-")
        assert tf().locals["environment_common"][queues[key]["setting"]] == queues[key]["name"]


def test_every_app_trigger_belongs_to_a_deployed_function() -> None:
    from app import app

    served = {t for f in FUNCTIONS for t in f.app_triggers}
    assert served == {e.name for e in app.event_sources} | {"*routes*"}
    (api,) = [f for f in FUNCTIONS if "*routes*" in f.app_triggers]
    assert api.name == "api"
    assert 'aws_lambda_function.fn["api"].invoke_arn' in tf().text
    permission = resource("aws_lambda_permission", "api")
    assert permission["principal"] == "apigateway.amazonaws.com"
    assert permission["function_name"] == '${aws_lambda_function.fn["api"].function_name}'


# -- the REST API --------------------------------------------------------------------------

def test_the_committed_openapi_body_is_what_the_generator_writes() -> None:
    assert openapi.TARGET.read_text() == openapi.render(), "run: python -m infra.aws.openapi"


def test_every_route_and_method_of_the_app_goes_to_the_api_function() -> None:
    from app import app

    body = json.loads(openapi.TARGET.read_text())
    assert set(body["paths"]) == set(app.routes)
    for path, views in app.routes.items():
        item = body["paths"][path]
        assert set(item) == {m.lower() for m in views} | {"options"}, path
        for method, entry in views.items():
            operation = item[method.lower()]
            integration = operation["x-amazon-apigateway-integration"]
            assert integration == {"type": "aws_proxy", "httpMethod": "POST",
                                   "uri": openapi.API_INVOKE_ARN,
                                   "passthroughBehavior": "when_no_match"}
            declared = [p["name"] for p in operation.get("parameters", [])
                        if p["in"] == "path" and p["required"]]
            assert declared == entry.view_args == re.findall(r"\{(\w+)\}", path), path
        preflight = item["options"]["x-amazon-apigateway-integration"]
        assert preflight["type"] == "mock"
        headers = preflight["responses"]["default"]["responseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == \
            f"'{openapi.FRONTEND_ORIGIN}'"
        assert headers["method.response.header.Access-Control-Allow-Methods"] == \
            "'" + ",".join([*sorted(views), "OPTIONS"]) + "'"

    assert "application/pdf" in body["x-amazon-apigateway-binary-media-types"]
    assert body["x-amazon-apigateway-binary-media-types"] == app.api.binary_types
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert set(responses) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses.values():
        assert response["responseParameters"] == {
            f"gatewayresponse.header.{k}": f"'{v}'" for k, v in SECURITY_HEADERS.items()}


def test_the_api_imports_the_body_with_both_placeholders_filled() -> None:
    text = (AWS / "api.tf").read_text()
    assert f'"{openapi.API_INVOKE_ARN}", aws_lambda_function.fn["api"].invoke_arn' in text
    assert f'"{openapi.FRONTEND_ORIGIN}", var.frontend_origin' in text
    # The preflights go when no origin is configured (no CORS header at all).
    assert 'if method != "options" || var.frontend_origin != ""' in text
    rest = resource("aws_api_gateway_rest_api", "api")
    assert rest["body"] == "${local.openapi_body}"
    deployment = resource("aws_api_gateway_deployment", "api")
    assert deployment["triggers"] == {"body": "${sha256(local.openapi_body)}"}
    stage = resource("aws_api_gateway_stage", "api")
    log = block(stage, "access_log_settings")
    assert log["destination_arn"] == "${aws_cloudwatch_log_group.api_access.arn}"
    assert "sourceIp" not in log["format"] and "userAgent" not in log["format"]
    settings = block(resource("aws_api_gateway_method_settings", "api"), "settings")
    assert settings["throttling_rate_limit"] == "${var.api_throttle_rate_limit}"
    assert settings["throttling_burst_limit"] == "${var.api_throttle_burst_limit}"
    assert settings["data_trace_enabled"] is False


# -- queues --------------------------------------------------------------------------------

def test_every_queue_mapping_reports_batch_item_failures_and_every_queue_has_dead_letters(
        ) -> None:
    mapping = resource("aws_lambda_event_source_mapping", "queue")
    assert mapping["for_each"] == "${local.queues}"
    assert mapping["function_response_types"] == ["ReportBatchItemFailures"]
    assert mapping["batch_size"] == "${each.value.batch_size}"
    assert mapping["function_name"] == "${aws_lambda_function.fn[each.value.consumer].arn}"
    assert mapping["event_source_arn"] == "${aws_sqs_queue.main[each.key].arn}"
    assert resource("aws_lambda_event_source_mapping", "queue") is mapping
    assert list(tf().resources["aws_lambda_event_source_mapping"]) == ["queue"]

    queue = resource("aws_sqs_queue", "main")
    assert queue["for_each"] == "${local.queues}"
    assert "deadLetterTargetArn = aws_sqs_queue.dead_letters[each.key].arn" in \
        queue["redrive_policy"]
    assert "maxReceiveCount = 5" in queue["redrive_policy"]
    # Six times the consumer's timeout: never handed to a second consumer mid-batch.
    assert queue["visibility_timeout_seconds"] == \
        "${6 * local.functions[each.value.consumer].timeout}"
    for q in (queue, resource("aws_sqs_queue", "dead_letters")):
        assert q["kms_master_key_id"] == "${aws_kms_key.platform.arn}"
    assert resource("aws_sqs_queue", "dead_letters")["for_each"] == "${local.queues}"


# -- the Object Lock archive ---------------------------------------------------------------

def _archive_statements() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = tf().data["aws_iam_policy_document"]["archive"]["statement"]
    return found


def _denied_to_everyone(action: str) -> list[dict[str, Any]]:
    return [s for s in _archive_statements() if s["effect"] == "Deny" and action in s["actions"]
            and s["principals"] == [{"type": "*", "identifiers": ["*"]}]]


def test_the_archive_bucket_is_locked_eleven_years_in_compliance_mode() -> None:
    bucket = resource("aws_s3_bucket", "archive")
    assert bucket["object_lock_enabled"] is True and bucket["force_destroy"] is False
    assert block(bucket, "lifecycle")["prevent_destroy"] is True
    versioning = resource("aws_s3_bucket_versioning", "archive")
    assert block(versioning, "versioning_configuration")["status"] == "Enabled"
    lock = resource("aws_s3_bucket_object_lock_configuration", "archive")
    assert lock["bucket"] == "${aws_s3_bucket.archive.id}"
    assert block(block(lock, "rule"), "default_retention") == {"mode": "COMPLIANCE", "years": 11}
    access = resource("aws_s3_bucket_public_access_block", "archive")
    assert all(access[k] is True for k in ("block_public_acls", "block_public_policy",
                                           "ignore_public_acls", "restrict_public_buckets"))
    sse = resource("aws_s3_bucket_server_side_encryption_configuration", "archive")
    assert block(block(sse, "rule"), "apply_server_side_encryption_by_default")[
        "sse_algorithm"] == "AES256"
    assert resource("aws_s3_bucket_logging", "archive")["target_bucket"] == \
        "${aws_s3_bucket.logs.id}"
    # The lifecycle expires nothing that is archived.
    rules = resource("aws_s3_bucket_lifecycle_configuration", "archive")["rule"]
    assert [set(r) - {"id", "status", "filter"} for r in rules] == [
        {"abort_incomplete_multipart_upload"}]


def test_the_archive_policy_refuses_tls_off_and_every_way_round_the_lock() -> None:
    (tls,) = [s for s in _archive_statements() if s["sid"] == "TlsOnly"]
    assert tls["effect"] == "Deny" and tls["actions"] == ["s3:*"]
    assert tls["condition"] == [{"test": "Bool", "variable": "aws:SecureTransport",
                                 "values": ["false"]}]
    for action in ("s3:DeleteObject", "s3:BypassGovernanceRetention", "s3:PutBucketVersioning",
                   "s3:PutBucketObjectLockConfiguration"):
        unconditional = [s for s in _denied_to_everyone(action) if "condition" not in s]
        assert unconditional, f"{action} is not denied to every principal"

    (purge_only,) = _denied_to_everyone("s3:DeleteObjectVersion")
    assert purge_only["condition"] == [{"test": "ArnNotEquals", "variable": "aws:PrincipalArn",
                                        "values": ['${aws_iam_role.fn["retention-purge"].arn}']}]
    retention = _denied_to_everyone("s3:PutObjectRetention")
    writers = [s for s in retention if s["sid"] == "RetentionOnlyByTheWriters"]
    assert writers[0]["condition"][0]["values"] == "${local.archive_writer_roles}"
    assert 'contains(f.capabilities, "archive_invoices") || contains(f.capabilities, ' \
        '"archive_witness")' in tf().locals["archive_writer_roles"]
    ceiling = [s for s in retention if s["sid"] == "NoRetentionBeyondTheLegalPeriod"]
    assert ceiling[0]["condition"][0]["variable"] == "s3:object-lock-remaining-retention-days"
    assert 11 * 366 < tf().locals["archive_max_retention_days"] < 12 * 365

    policy = resource("aws_s3_bucket_policy", "archive")
    assert policy["policy"] == "${data.aws_iam_policy_document.archive.json}"
    # Applied after the versioning and the lock, which it then refuses to change.
    assert {"${aws_s3_bucket_versioning.archive}",
            "${aws_s3_bucket_object_lock_configuration.archive}"} <= set(policy["depends_on"])


def test_the_archive_policy_refuses_a_write_over_an_existing_key() -> None:
    conditions = [s["condition"][0] for s in _denied_to_everyone("s3:PutObject")
                  if s["resources"] == ["${aws_s3_bucket.archive.arn}/*"]]
    assert {"test": "Null", "variable": "s3:if-none-match", "values": ["true"]} in conditions
    assert {"test": "StringNotEquals", "variable": "s3:if-none-match",
            "values": ["*"]} in conditions
    # ... which the archive's puts always carry (tests/integration/test_archive.py).
    source = (ROOT / "chalicelib" / "adapters" / "archive.py").read_text()
    assert 'IfNoneMatch="*"' in source


def test_deleting_a_version_is_for_the_retention_purge_alone() -> None:
    assert allowed("s3:DeleteObjectVersion") == {"retention-purge"}
    assert allowed("s3:DeleteObject") == set()
    # Off until the code purges archived objects.
    assert tf().variables["archive_purge_enabled"]["default"] is False


# -- least privilege -----------------------------------------------------------------------

def test_no_role_allows_a_wildcard_action_or_an_unscoped_resource() -> None:
    every = [s for capability in tf().locals["statements_of_capability"]
             for s in (statements("retention-purge") if capability == "archive_purge"
                       else resolve(tf().locals["statements_of_capability"][capability]))]
    assert every
    for s in every:
        assert s["Effect"] == "Allow", s["Sid"]
        assert all("*" not in action for action in s["Action"]), s["Sid"]
        assert s["Resource"] and all(r.startswith("${") or r.startswith("arn:${")
                                     for r in s["Resource"]), s["Sid"]
        assert "*" not in s["Resource"], s["Sid"]
    # Every S3 object statement is limited to the prefixes the code writes.
    prefixes = {r.split("}", 1)[1] for s in every for r in s["Resource"]
                if r.startswith("${aws_s3_bucket.archive.arn}/")}
    assert prefixes == {"/tenants/*/invoices/*", "/tenants/*/witness/*", "/tenants/*"}
    (purge,) = [s for s in every if s["Sid"] == "ArchivePurge"]
    assert purge["Resource"] == ["${aws_s3_bucket.archive.arn}/tenants/*"]


def test_the_archive_prefixes_are_the_keys_the_code_writes() -> None:
    from chalicelib.usecases.archive_invoice import archive_key

    tenant = UUID(int=7)
    invoice: Any = SimpleNamespace(issue_date=date(2026, 11, 23), invoice_number="F-2026-0001")
    invoice_keys = [archive_key(tenant, invoice, kind) for kind in ("pdf", "xml")]
    witness_keys = [witness_key(tenant, 12, "head"), witness_key(tenant, 12, "closing")]
    assert all(fnmatch.fnmatchcase(k, "tenants/*/invoices/*") for k in invoice_keys)
    assert all(fnmatch.fnmatchcase(k, "tenants/*/witness/*") for k in witness_keys)
    assert not any(fnmatch.fnmatchcase(k, "tenants/*/witness/*") for k in invoice_keys)
    assert not any(fnmatch.fnmatchcase(k, "tenants/*/invoices/*") for k in witness_keys)


def test_each_function_may_do_what_its_trigger_needs_and_no_more() -> None:
    invoices, witnesses = "/tenants/*/invoices/*", "/tenants/*/witness/*"
    assert allowed("s3:PutObject", invoices) == {"api", "issue-invoice", "archive-sweep"}
    assert allowed("s3:PutObject", witnesses) == {"api", "scheduled-closings"}
    assert allowed("s3:GetObjectVersion") == {"api", "issue-invoice", "archive-sweep",
                                              "scheduled-closings"}
    assert allowed("s3:ListBucket") == {"api", "health", "issue-invoice", "archive-sweep",
                                        "scheduled-closings", "retention-purge"}
    assert allowed("s3:GetBucketObjectLockConfiguration") == {
        "api", "issue-invoice", "archive-sweep", "scheduled-closings"}
    # The invoice queue: api sends (POST /invoice-batches), issue-invoice consumes.
    assert allowed("sqs:SendMessage") == {"api"}
    assert allowed("sqs:SendMessage", 'aws_sqs_queue.main["invoice"]') == {"api"}
    assert allowed("sqs:ReceiveMessage", 'aws_sqs_queue.main["ledger"]') == {"append-ledger"}
    assert allowed("sqs:ReceiveMessage", 'aws_sqs_queue.main["invoice"]') == {"issue-invoice"}
    assert allowed("sqs:DeleteMessage") == {"append-ledger", "issue-invoice"}
    # Only issuing calls the conformance check, and only it.
    assert allowed("lambda:InvokeFunction") == {"api", "issue-invoice"}
    conformance = 'function:${local.function_names["conformance-check"]}'
    assert allowed("lambda:InvokeFunction", conformance) == {"api", "issue-invoice"}
    for name in ("api", "issue-invoice"):
        assert environment(name)["EINVOICE_CONFORMANCE_CHECK"] == \
            'aws-lambda:${local.function_names["conformance-check"]}'
    assert {n for n in MANIFEST if "EINVOICE_CONFORMANCE_CHECK" in environment(n)} == {
        "api", "issue-invoice"}
    # The data-key key: the functions that open sealed fields, told to use it.
    sealed = {"api", "issue-invoice", "archive-sweep"}
    assert allowed("kms:Decrypt", "aws_kms_key.data_keys") == sealed
    assert allowed("kms:Encrypt", "aws_kms_key.data_keys") == sealed
    for name in MANIFEST:
        env = environment(name)
        if name in sealed:
            assert env["EINVOICE_KEY_PROVIDER"] == "aws-kms"
            assert env["EINVOICE_KMS_KEY_ID"] == "${aws_kms_key.data_keys.arn}"
        else:
            assert "EINVOICE_KEY_PROVIDER" not in env and "EINVOICE_KMS_KEY_ID" not in env
    # The platform key only through the service that needs it.
    for name in MANIFEST:
        for s in statements(name):
            if any("aws_kms_key.platform" in r for r in s["Resource"]):
                assert set(s["Condition"]["StringEquals"]) == {"kms:ViaService"}, s["Sid"]


def test_the_data_key_key_is_kept_and_used_only_for_data_keys() -> None:
    """Deleting the key loses every sealed value; the roles may use it only
    with the purpose the KMS adapter puts in every call's context."""
    from chalicelib.adapters.kms import PURPOSE

    key = resource("aws_kms_key", "data_keys")
    assert block(key, "lifecycle")["prevent_destroy"] is True
    grants = [s for name in MANIFEST for s in statements(name)
              if any("aws_kms_key.data_keys" in r for r in s["Resource"])]
    assert grants
    for grant in grants:
        assert grant["Condition"] == {
            "StringEquals": {"kms:EncryptionContext:purpose": PURPOSE}}, grant["Sid"]


def test_each_function_reads_only_its_own_secrets_and_only_migrate_the_owners() -> None:
    assert {n for n in MANIFEST if "db_owner_password" in secrets(n)} == {"migrate"}
    assert {n for n in MANIFEST if "closing_key_pem" in secrets(n)} == {
        "api", "scheduled-closings"}
    assert {n for n in MANIFEST if "smtp_password" in secrets(n)} == {"api"}
    assert {n for n in MANIFEST if "closing_public_keys" in secrets(n)} == {
        "api", "scheduled-closings"}
    assert {n for n in MANIFEST if "database_ca" in secrets(n)} == {
        n for n in MANIFEST if "EINVOICE_DB_HOST" in environment(n)}
    assert secrets("conformance-check") == set()
    arn_env = {"EINVOICE_DB_APP_PASSWORD_SECRET_ARN": "db_app_password",
               "EINVOICE_DB_OWNER_PASSWORD_SECRET_ARN": "db_owner_password",
               "EINVOICE_SMTP_PASSWORD_SECRET_ARN": "smtp_password",
               "EINVOICE_CLOSING_KEY_PEM_SECRET_ARN": "closing_key_pem",
               "EINVOICE_DB_CA_PEM_SECRET_ARN": "database_ca",
               "EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN": "closing_public_keys"}
    for name in MANIFEST:
        told = {arn_env[k] for k in environment(name) if k.endswith("_SECRET_ARN")}
        assert told == secrets(name), name  # told of exactly the secrets it may read
    text = tf().text
    assert 'Resource = local.function_secrets[name]' in text
    assert '"kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com"' in text
    assert 'Resource = ["${aws_cloudwatch_log_group.fn[name].arn}:*"]' in text


def test_network_interface_rights_are_the_only_unscoped_ones() -> None:
    """A function in a VPC needs six EC2 actions that take no resource; AWS's
    managed VPC policy would add writing to every log group, so it is not used."""
    text = (AWS / "iam.tf").read_text()
    block = text[text.index('Sid    = "NetworkInterfaces"'):]
    block = block[:block.index("}")]
    actions = set(re.findall(r'"(ec2:\w+)"', block))
    assert actions == {"ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                       "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
                       "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"}
    assert "AWSLambdaVPCAccessExecutionRole" not in "".join(
        p.read_text() for p in AWS.glob("*.tf"))


def test_roles_get_no_other_policy_than_their_own() -> None:
    resources = tf().resources
    assert "aws_iam_policy" not in resources
    assert set(resources["aws_iam_role_policy"]) == {"fn"}
    assert resource("aws_iam_role_policy", "fn")["policy"] == (
        '${jsonencode({Version = "2012-10-17", Statement = local.function_statements[each.key]})}')
    attached = {name: body["policy_arn"] for name, body in
                resources["aws_iam_role_policy_attachment"].items()}
    assert attached == {
        "xray": "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess",
        "api_gateway_logs": "arn:${local.partition}:iam::aws:policy/service-role/"
                            "AmazonAPIGatewayPushToCloudWatchLogs",
    }
    assert resources["aws_iam_role_policy_attachment"]["xray"]["for_each"] == \
        "${{for name, f in local.functions : name => f if var.xray_tracing}}"


# -- the environment -----------------------------------------------------------------------

def test_no_function_environment_holds_a_plain_secret() -> None:
    plain = {f"EINVOICE_{name}" for name in (*SECRET_SETTINGS, *OTHER_PROVIDER_SECRETS)}
    for name in MANIFEST:
        for key, value in environment(name).items():
            assert key not in plain, (name, key)
            if key.endswith("_SECRET_ARN"):
                assert re.search(r"aws_secretsmanager_secret\.\w+\.arn", value), (name, key)
            for forbidden in ("random_password", "secret_string", "var.smtp_password",
                              "var.closing_key_pem", "password.result"):
                assert forbidden not in value, (name, key)
    for secret in tf().resources["aws_secretsmanager_secret"].values():
        assert secret["kms_key_id"] == "${aws_kms_key.platform.arn}"
    for variable in ("smtp_password", "closing_key_pem"):
        assert tf().variables[variable]["sensitive"] is True


def test_every_einvoice_variable_is_a_setting_or_a_new_name_of_the_contract() -> None:
    known = {f"EINVOICE_{field.name.upper()}" for field in fields(Settings)} | {
        f"EINVOICE_{name}" for name in NEW_SETTINGS}
    blocks = [tf().locals["environment_common"],
              *tf().locals["environment_of_capability"].values()]
    names = {key for b in blocks for key in b}
    assert names
    assert {n for n in names if n.startswith("EINVOICE_")} <= known
    assert {n for n in names if not n.startswith("EINVOICE_")} == {
        "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}
    assert set(tf().locals["environment_of_capability"]) == set(
        tf().locals["statements_of_capability"])
    assert {c for f in tf().locals["functions"].values() for c in f["capabilities"]} <= set(
        tf().locals["environment_of_capability"])


def test_the_functions_reach_the_database_over_verified_tls() -> None:
    for name in MANIFEST:
        env = environment(name)
        if "EINVOICE_DB_HOST" in env:
            assert env["EINVOICE_DB_TLS"] == "true"
            # The certificate is too long for the environment: its secret's ARN.
            assert env["EINVOICE_DB_CA_PEM_SECRET_ARN"] == \
                "${aws_secretsmanager_secret.database_ca.arn}"
            assert "EINVOICE_DB_CA_PEM" not in env
    assert {n for n in MANIFEST if "EINVOICE_DB_HOST" not in environment(n)} == {
        "conformance-check"}
    assert {n for n in MANIFEST if "EINVOICE_DB_OWNER_USER" in environment(n)} == {"migrate"}


def test_every_environment_fits_lambdas_four_kilobytes() -> None:
    """Lambda refuses more than 4 KB of environment in all (keys, values and
    their JSON punctuation): counted with the longest name AWS gives each
    resource, and 64 characters for any value the operator chooses (100 for
    another ARN). The long values (the database's CA, the closing keys still
    trusted) are secrets' ARNs, so they take no more room as they grow."""
    assert "var.db_ca_pem" not in json.dumps(tf().locals["environment_of_capability"])
    assert "join(\",\", var.closing_public_keys)" not in json.dumps(
        tf().locals["environment_of_capability"])
    longest = {
        '${join(",", var.ots_calendars)}': 200,
        "${aws_db_instance.main.address}": 21 + len(".abcdefghijkl.eu-west-3.rds.amazonaws.com"),
        "${aws_s3_bucket.archive.id}": 63,
        "${aws_kms_key.data_keys.arn}": len("arn:aws:kms:eu-west-3:123456789012:key/") + 36,
        "${local.ledger_queue_name}": 21 + len("-ledger-append"),
        "${local.invoice_queue_name}": 21 + len("-invoice-issue"),
        '${local.function_names["conformance-check"]}': 21 + len("-conformance-check"),
        "${tostring(aws_db_instance.main.port)}": 5,
        "${tostring(var.smtp_port)}": 5,
        "${var.region}": len("eu-west-3"),
    }
    reference = re.compile(r"\$\{[^}]*\}+")

    def size(key: str, value: str) -> int:
        return len(key) + len(reference.sub("", value)) + len('"":"",') + sum(
            longest.get(r, 100 if ".arn" in r else 64) for r in reference.findall(value))

    for name in MANIFEST:
        total = sum(size(k, v) for k, v in environment(name).items())
        assert total < 4096, (name, total)


# -- the database --------------------------------------------------------------------------

def test_the_database_is_private_encrypted_and_keeps_thirty_days_of_backups() -> None:
    db = resource("aws_db_instance", "main")
    assert db["engine"] == "postgres" and db["engine_version"] == "15"
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True and db["kms_key_id"] == "${aws_kms_key.platform.arn}"
    assert db["backup_retention_period"] == 30
    assert db["deletion_protection"] is True and db["skip_final_snapshot"] is False
    assert db["username"] == "${var.db_owner_user}"
    assert db["password"] == "${random_password.db_owner.result}"
    assert db["ca_cert_identifier"] == "${var.db_ca_cert_identifier}"
    assert db["vpc_security_group_ids"] == ["${aws_security_group.database.id}"]
    subnets = resource("aws_db_subnet_group", "main")
    assert db["db_subnet_group_name"] == "${aws_db_subnet_group.main.name}"
    assert subnets["subnet_ids"] == "${aws_subnet.private[*].id}"
    parameters = resource("aws_db_parameter_group", "main")
    assert parameters["family"] == "postgres15"
    assert {"name": "rds.force_ssl", "value": "1"} in parameters["parameter"]
    assert db["parameter_group_name"] == "${aws_db_parameter_group.main.name}"


def test_only_the_functions_reach_the_database() -> None:
    ingress = tf().resources["aws_vpc_security_group_ingress_rule"]
    to_database = [r for r in ingress.values()
                   if r["security_group_id"] == "${aws_security_group.database.id}"]
    assert to_database == [ingress["database_from_functions"]]
    rule = ingress["database_from_functions"]
    assert rule["referenced_security_group_id"] == "${aws_security_group.functions.id}"
    assert "cidr_ipv4" not in rule and rule["from_port"] == rule["to_port"] == 5432
    for group in tf().resources["aws_security_group"].values():
        assert "ingress" not in group and "egress" not in group
    for rule in tf().resources["aws_vpc_security_group_egress_rule"].values():
        assert rule["ip_protocol"] == "tcp" and rule["from_port"] == rule["to_port"]
    for subnet in (resource("aws_subnet", "public"),):
        assert subnet["map_public_ip_on_launch"] is False


# -- the migration job ---------------------------------------------------------------------

def test_migrate_runs_at_apply_before_any_trigger_reaches_a_function() -> None:
    invocation = resource("aws_lambda_invocation", "migrate")
    assert invocation["function_name"] == '${aws_lambda_function.fn["migrate"].function_name}'
    assert invocation["triggers"]["package"] == \
        '${filebase64sha256("${var.package_dir}/migrate.zip")}'
    assert {"${aws_db_instance.main}", "${aws_iam_role_policy.fn}",
            "${aws_secretsmanager_secret_version.db_owner_password}",
            "${aws_secretsmanager_secret_version.db_app_password}"} <= set(
        invocation["depends_on"])
    for type_, name in (("aws_lambda_event_source_mapping", "queue"),
                        ("aws_cloudwatch_event_target", "schedule"),
                        ("aws_api_gateway_deployment", "api")):
        assert "${aws_lambda_invocation.migrate}" in resource(type_, name)["depends_on"], type_


# -- observability -------------------------------------------------------------------------

def test_every_alerting_condition_has_its_alarm() -> None:
    service = tf().locals["service_metric_alarms"]
    assert set(service) == {"ArchiveFailures", "AnchoringFailures", "WitnessAlarms",
                            "RateLimitRefusals", "ArchiveMissing"}
    assert {k: v["threshold"] for k, v in service.items()} == {
        "ArchiveFailures": 0, "AnchoringFailures": 0, "WitnessAlarms": 0, "ArchiveMissing": 0,
        "RateLimitRefusals": "${var.rate_limit_refusals_threshold}"}
    alarm = resource("aws_cloudwatch_metric_alarm", "service")
    assert alarm["namespace"] == "einvoice" and alarm["metric_name"] == "${each.key}"
    assert alarm["comparison_operator"] == "GreaterThanThreshold"

    dead = resource("aws_cloudwatch_metric_alarm", "dead_letters")
    assert dead["for_each"] == "${local.queues}"
    assert dead["metric_name"] == "ApproximateNumberOfMessagesVisible"
    assert dead["dimensions"] == {"QueueName": "${aws_sqs_queue.dead_letters[each.key].name}"}
    errors = resource("aws_cloudwatch_metric_alarm", "function_errors")
    assert errors["for_each"] == "${local.functions}" and errors["metric_name"] == "Errors"
    silent = resource("aws_cloudwatch_metric_alarm", "schedule_silent")
    assert silent["for_each"] == "${local.schedules}"
    assert silent["metric_name"] == "Invocations" and silent["treat_missing_data"] == "breaching"
    for body in tf().resources["aws_cloudwatch_metric_alarm"].values():
        assert body["alarm_actions"] == "${local.alarm_actions}"
    assert resolve(tf().locals["alarm_actions"]) == ["${aws_sns_topic.alarms.arn}"]
    subscription = resource("aws_sns_topic_subscription", "alarm_email")
    assert subscription["protocol"] == "email" and subscription["endpoint"] == \
        "${var.alarm_email}"


def test_every_operator_alert_line_is_still_logged_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "chalicelib").rglob("*.py"))
    messages = tf().locals["operator_alert_messages"]
    assert messages
    for message in messages:
        assert f'"{message}"' in source, message
    # The code says "the operator is alerted" for each of these.
    answers = (ROOT / "chalicelib" / "entrypoints" / "answers.py").read_text()
    assert answers.count("the operator is alerted") == 2
    metric_filter = resource("aws_cloudwatch_log_metric_filter", "operator_alerts")
    assert metric_filter["for_each"] == "${local.functions}"


def _service_unavailable_alerts() -> set[str]:
    """The line each kind of ServiceUnavailable logs for the operator (answers.py)."""
    from chalicelib.domain.errors import ServiceUnavailable

    kinds, alerts = [ServiceUnavailable], set()
    _import_all_of_chalicelib()  # a kind is a subclass only once its module is imported
    while kinds:
        kind = kinds.pop()
        if kind.__module__.startswith("chalicelib."):  # not the tests' own kinds
            alerts.add(kind.alert)
        kinds += kind.__subclasses__()
    return alerts


def test_every_service_unavailable_line_raises_the_operator_alarm() -> None:
    """answers.py logs `alert` of whatever ServiceUnavailable it answers 503
    for, each of which says the operator is alerted: the metric filter must
    count every one (a Key Manager outage included)."""
    missing = _service_unavailable_alerts() - set(tf().locals["operator_alert_messages"])
    assert missing == set()


def test_every_log_group_is_encrypted_and_kept_a_year() -> None:
    groups = tf().resources["aws_cloudwatch_log_group"]
    assert {"fn", "api_access", "api_execution", "database"} == set(groups)
    for group in groups.values():
        assert group["kms_key_id"] == "${aws_kms_key.platform.arn}"
        assert group["retention_in_days"] == "${var.log_retention_days}"
    assert tf().variables["log_retention_days"]["default"] >= 365
    for key in tf().resources["aws_kms_key"].values():
        assert key["enable_key_rotation"] is True


def test_the_region_is_paris_only() -> None:
    region = tf().variables["region"]
    assert region["default"] == "eu-west-3"
    assert region["validation"][0]["condition"] == '${var.region == "eu-west-3"}'
    versions = (AWS / "versions.tf").read_text()
    assert 'version = "~> 5.0"' in versions and 'required_version = ">= 1.5"' in versions


# -- the tools -----------------------------------------------------------------------------

def test_terraform_fmt_finds_nothing_to_change() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH: the format check must run "
                    "(the machine image has it at /usr/local/bin/terraform)")
    done = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(AWS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _checkov() -> str:
    found = os.environ.get("EINVOICE_CHECKOV") or str(ROOT / ".venv-tools" / "bin" / "checkov")
    if not Path(found).exists():
        pytest.fail(f"checkov not found at {found}: set EINVOICE_CHECKOV or install the tools "
                    "venv (bin/_ensure.sh); this check must not be skipped")
    return found


def test_checkov_leaves_no_failed_check() -> None:
    """Each tree on its own (checkov prints one JSON document per directory)."""
    directories = [AWS, *([SCALEWAY] if SCALEWAY.is_dir() else [])]
    passed: dict[Path, int] = {}
    for directory in directories:
        command = [_checkov(), "--config-file", str(CHECKOV_CONFIG), "--compact", "--quiet",
                   "--skip-download", "-o", "json", "-d", str(directory)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=ROOT,
                              env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
        assert done.returncode == 0, done.stderr[-2000:]
        reports = json.loads(done.stdout)
        if "summary" not in reports and "passed" in reports:
            # Nothing it has a check for (its plain summary): the Scaleway tree,
            # for which checkov 3.3 has no check at all (infra/scaleway/CHECKOV.md).
            assert reports["failed"] == 0 and reports["parsing_errors"] == 0, directory
            passed[directory] = reports["passed"]
            continue
        reports = reports if isinstance(reports, list) else [reports]
        failed = [(c["check_id"], c["resource"], c["file_path"])
                  for r in reports for c in r.get("results", {}).get("failed_checks", [])]
        assert failed == [], directory
        assert all(r.get("summary", {}).get("parsing_errors", 0) == 0 for r in reports)
        passed[directory] = sum(r["summary"]["passed"] for r in reports
                                if r.get("check_type") == "terraform")
    assert passed[AWS] > 100  # checkov's AWS checks did run on the AWS tree


def test_every_skipped_check_says_why() -> None:
    listed = re.findall(r"^\s*-\s*(CKV\w+)\s*(#\s*(.*))?$", CHECKOV_CONFIG.read_text(), re.M)
    assert listed
    for check, _, reason in listed:
        assert len(reason.strip()) >= 20, check
    assert len({c for c, _, _ in listed}) == len(listed)
    inline = re.findall(r"checkov:skip=(\w+)(:\s*(.*))?", "\n".join(
        p.read_text() for d in (AWS, SCALEWAY) if d.is_dir() for p in d.rglob("*.tf")))
    assert inline
    for check, _, reason in inline:
        assert len(reason.strip()) >= 20, check


def _import_all_of_chalicelib() -> None:
    import importlib
    import pkgutil

    import chalicelib

    for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
        importlib.import_module(module.name)


def test_the_retired_closing_keys_reach_the_verifying_functions_through_their_secret() -> None:
    """Rotating the closing key is deployable: the old public keys (a list that
    would not fit in the api's environment) are stored in a secret that only the
    functions verifying closings may read, named by its ARN, and only when the
    list is not empty (an empty secret version is refused by Secrets Manager)."""
    variable = tf().variables["closing_public_keys"]
    assert variable["default"] == [] and variable["type"] == "${list(string)}"
    assert "^[0-9a-f]{64}$" in variable["validation"][0]["condition"]
    version = resource("aws_secretsmanager_secret_version", "closing_public_keys")
    assert version["count"] == "${length(var.closing_public_keys) > 0 ? 1 : 0}"
    assert version["secret_string"] == '${join(",", var.closing_public_keys)}'
    told = {n for n in MANIFEST
            if "EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN" in environment(n)}
    assert told == {"api", "scheduled-closings"}
    assert environment("api")["EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN"] == (
        "${length(var.closing_public_keys) > 0 ? "
        "aws_secretsmanager_secret.closing_public_keys.arn : \"\"}")
    assert all("EINVOICE_CLOSING_PUBLIC_KEYS" not in environment(n) for n in MANIFEST)
