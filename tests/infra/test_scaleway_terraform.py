"""infra/scaleway deploys what deploy/manifest.py and app.py say, with the
guarantees the docs promise: read from the Terraform itself (python-hcl2),
since terraform init/plan need the registry and a Scaleway account.

What cannot be read from HCL (the provider's behaviour, Scaleway's) is stated
in docs/deploy/scaleway.md; the argument names were checked against the
provider's schema by hand.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from chalice.app import Cron, ScheduledEventConfig, SQSEventConfig

from chalicelib.config import Settings, secret_settings
from deploy.manifest import FUNCTIONS, Function
from deploy.package import CONTAINERFILE, target

ROOT = Path(__file__).resolve().parents[2]
TREE = ROOT / "infra" / "scaleway"

# The EINVOICE_ names the Terraform may set that are not (yet) Settings fields
# on this branch: the new names of the shared contract, and one proposed here.
CONTRACT_NEW_NAMES = {
    "DB_CA_FILE", "DB_CA_PEM", "SQS_REGION", "SQS_ACCESS_KEY_ID", "SQS_SECRET_ACCESS_KEY",
    "KEY_PROVIDER", "KMS_KEY_ID", "SCW_KEY_ID", "SCW_REGION", "SCW_SECRET_KEY",
    "CLOSING_KEY_PEM", "CONFORMANCE_CHECK", "CONFORMANCE_CHECK_TOKEN",
}
# Proposed, not in the contract: Scaleway caps every function environment
# value at 1000 characters and the database certificate is longer, so it
# comes as EINVOICE_DB_CA_PEM_1, _2, ... for the settings to join in order.
PROPOSED_NEW_PREFIXES = ("DB_CA_PEM_",)
# The new names whose values are secrets (besides the Secret settings).
NEW_SECRET_NAMES = {"SQS_ACCESS_KEY_ID", "SQS_SECRET_ACCESS_KEY", "SCW_SECRET_KEY",
                    "CLOSING_KEY_PEM", "CONFORMANCE_CHECK_TOKEN"}


# -- reading the tree --------------------------------------------------------------------

def unquote(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and block labels."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def plain(value: Any) -> Any:
    """`value` with string quotes, comments and hcl2's block markers removed."""
    if isinstance(value, dict):
        return {unquote(k): plain(v) for k, v in value.items()
                if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return unquote(value)


@cache
def tree() -> dict[str, Any]:
    """Every .tf file merged: resources[type][name], data[type][name], locals, variables."""
    merged: dict[str, Any] = {"resource": {}, "data": {}, "locals": {}, "variable": {},
                              "terraform": []}
    for path in sorted(TREE.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            document = plain(hcl2.load(handle))
        for kind in ("resource", "data"):
            for block in document.get(kind, []):
                for rtype, named in block.items():
                    merged[kind].setdefault(rtype, {}).update(named)
        for block in document.get("locals", []):
            merged["locals"].update(block)
        for block in document.get("variable", []):
            merged["variable"].update(block)
        merged["terraform"] += document.get("terraform", [])
    return merged


def resources(rtype: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = tree()["resource"].get(rtype, {})
    return found


def one_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block"
    block: dict[str, Any] = blocks[0]
    return block


def variable_default(name: str) -> Any:
    return tree()["variable"][name].get("default")


def env_names(expression: Any) -> set[str]:
    """The EINVOICE_ names an environment expression sets: literal maps, and
    the locals it merges, followed through."""
    if isinstance(expression, dict):
        return {str(k) for k in expression}
    if not isinstance(expression, str):
        return set()
    names = set(re.findall(r"(EINVOICE_[A-Z0-9_]+)", expression))
    for local in re.findall(r"local\.(\w+)", expression):
        names |= env_names(tree()["locals"][local])
    return names


def functions() -> dict[str, dict[str, Any]]:
    """The scaleway_function blocks by their Scaleway name."""
    return {body["name"]: body | {"_resource": key}
            for key, body in resources("scaleway_function").items()}


def containers() -> dict[str, dict[str, Any]]:
    """The scaleway_container blocks by their Scaleway name."""
    return {body["name"]: body | {"_resource": key}
            for key, body in resources("scaleway_container").items()}


def units() -> dict[str, dict[str, Any]]:
    """Every deployed unit, function or container, by its manifest name."""
    return functions() | containers()


RUN_AS_FUNCTION = [f for f in FUNCTIONS if f.scaleway_runs_as == "function"]
RUN_AS_CONTAINER = [f for f in FUNCTIONS if f.scaleway_runs_as == "container"]


def reference(rtype: str, body: dict[str, Any] | None, attribute: str = "id") -> str:
    """The interpolation that points at a resource block of `rtype` named like `body`."""
    assert body is not None
    return f"${{{rtype}.{body['_resource']}.{attribute}}}"


def setting_names() -> set[str]:
    return {setting.name.upper() for setting in fields(Settings)}


def secret_setting_names() -> set[str]:
    secret = {name.upper() for name in secret_settings()}
    return secret | NEW_SECRET_NAMES


def tf_text() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(TREE.glob("*.tf")))


# -- functions ---------------------------------------------------------------------------

def test_every_manifest_function_has_its_scaleway_function() -> None:
    deployed = functions()
    assert set(deployed) == {f.name for f in RUN_AS_FUNCTION}
    assert not set(deployed) & set(containers())
    for f in RUN_AS_FUNCTION:
        body = deployed[f.name]
        assert body["handler"] == f.scaleway_handler, f.name
        assert body["runtime"] == "python311", f.name
        assert body["timeout"] == f.timeout_seconds, f.name
        assert body["memory_limit"] == f.memory_mb, f.name
        package = f"${{var.package_dir}}/{f.name}.zip"
        assert body["zip_file"] == package, f.name
        assert body["zip_hash"] == f'${{filesha256("{package}")}}', f.name
        assert body["deploy"] is True, f.name
        assert body["namespace_id"] == "${scaleway_function_namespace.main.id}", f.name
        assert body["http_option"] == "redirected", f.name  # HTTPS only


def test_the_manifest_runs_as_container_exactly_what_is_packaged_as_one() -> None:
    """A container unit's zip is a build context, a function's is not: the
    manifest and the packager agree, and the image serves the manifest's handler."""
    assert [f.name for f in RUN_AS_CONTAINER] == ["conformance-check"]
    for f in FUNCTIONS:
        assert target("scaleway", f).container is (f.scaleway_runs_as == "container"), f.name
    (conformance,) = RUN_AS_CONTAINER
    assert f'CMD ["python", "serve.py", "{conformance.scaleway_handler}"]' in CONTAINERFILE
    assert re.search(r"\bPORT=(\d+)\b", CONTAINERFILE)[1] == "8080"  # type: ignore[index]


def test_every_container_unit_is_a_private_scaleway_container_as_the_manifest_says() -> None:
    deployed = containers()
    assert set(deployed) == {f.name for f in RUN_AS_CONTAINER}
    for f in RUN_AS_CONTAINER:
        body = deployed[f.name]
        assert body["privacy"] == "private", f.name
        assert body["namespace_id"] == "${scaleway_container_namespace.main.id}", f.name
        assert body["https_connections_only"] is True, f.name
        assert body["timeout"] == f.timeout_seconds, f.name
        assert body["memory_limit_bytes"] == f.memory_mb * 1000 * 1000, f.name  # the SDK's MB
        # Scaleway's pairing of memory and vCPU (the provider's container docs).
        assert body["cpu_limit"] == {128: 70, 256: 140, 512: 280, 1024: 560,
                                     2048: 1120}[f.memory_mb], f.name
        assert body["port"] == 8080, f.name  # the Dockerfile's PORT, where serve.py listens
        assert one_block(body, "scaling_option") == {"concurrent_requests_threshold": 1}
        assert body["min_scale"] == "${var.conformance_check_min_scale}"
        assert variable_default("conformance_check_min_scale") == 0
        assert 1 <= body["max_scale"] <= 50, f.name
        # Deprecated arguments the provider still accepts: not used.
        for deprecated in ("registry_image", "memory_limit", "http_option", "deploy"):
            assert deprecated not in body, (f.name, deprecated)
    namespace = resources("scaleway_container_namespace")["main"]
    assert namespace["region"] == "${var.region}" and variable_default("region") == "fr-par"
    assert "environment_variables" not in namespace
    assert "secret_environment_variables" not in namespace


def test_the_image_comes_from_the_private_registry_tagged_with_the_package_sha256() -> None:
    registry = resources("scaleway_registry_namespace")["main"]
    assert registry["is_public"] is False
    assert registry["region"] == "${var.region}"
    container = containers()["conformance-check"]
    assert container["image"] == "${local.conformance_check_image}"
    assert tree()["locals"]["conformance_check_image"] == \
        '${var.conformance_check_image == null ? "" : var.conformance_check_image}'
    assert tree()["locals"]["conformance_check_expected_image"] == (
        "${scaleway_registry_namespace.main.endpoint}/conformance-check:"
        '${filesha256("${var.package_dir}/conformance-check.zip")}')
    precondition = one_block(one_block(container, "lifecycle"), "precondition")
    assert precondition["condition"] == \
        "${local.conformance_check_image == local.conformance_check_expected_image}"
    assert variable_default("conformance_check_image") is None


def _image_pattern() -> re.Pattern[str]:
    validation = one_block(tree()["variable"]["conformance_check_image"], "validation")
    found = re.search(r'regex\("(.+)", var\.conformance_check_image\)',
                      validation["condition"])
    assert found, validation["condition"]
    return re.compile(found[1].replace("\\\\", "\\"))


def test_the_image_variable_refuses_a_reference_not_pinned_to_a_package() -> None:
    pattern = _image_pattern()
    digest = "0123456789abcdef" * 4
    assert pattern.fullmatch(f"rg.fr-par.scw.cloud/einvoice-ab12/conformance-check:{digest}")
    for refused in ("rg.fr-par.scw.cloud/einvoice-ab12/conformance-check:latest",
                    f"rg.fr-par.scw.cloud/einvoice-ab12/conformance-check:{digest[:12]}",
                    f"docker.io/someone/conformance-check:{digest}",
                    f"rg.fr-par.scw.cloud/einvoice-ab12/other:{digest}",
                    f"rgXfr-par.scw.cloud/einvoice-ab12/conformance-check:{digest}"):
        assert not pattern.fullmatch(refused), refused


def test_only_the_http_functions_are_public() -> None:
    privacy = {name: body["privacy"] for name, body in functions().items()}
    assert {n for n, p in privacy.items() if p == "public"} == \
        {f.name for f in FUNCTIONS if f.trigger == "http"} == {"api", "health"}
    assert {n for n, p in privacy.items() if p != "public"} == \
        {n for n, p in privacy.items() if p == "private"}


def _function_for(app_trigger: str) -> Function:
    carriers = [f for f in FUNCTIONS if app_trigger in f.app_triggers]
    assert len(carriers) == 1, app_trigger
    return carriers[0]


def test_every_route_of_app_py_is_served_by_the_public_api_function() -> None:
    from app import app

    assert len(app.routes) > 20
    api = _function_for("*routes*")
    assert api.name == "api" and functions()["api"]["privacy"] == "public"
    assert functions()["api"]["handler"] == "functions/api.handle"


def test_every_queue_of_app_py_has_a_scaleway_trigger_on_that_queue() -> None:
    from app import app

    sources = [e for e in app.event_sources if isinstance(e, SQSEventConfig)]
    assert len(sources) == 2
    triggers = resources("scaleway_function_trigger")
    queues = resources("scaleway_mnq_sqs_queue")
    for source in sources:
        function = functions()[_function_for(source.name).name]
        mine = [t for t in triggers.values()
                if t["function_id"] == reference("scaleway_function", function)]
        assert len(mine) == 1, source.name
        sqs = one_block(mine[0], "sqs")
        queue_key = re.fullmatch(r"\$\{scaleway_mnq_sqs_queue\.(\w+)\.name\}", sqs["queue"])
        assert queue_key, sqs["queue"]
        variable = re.fullmatch(r"\$\{var\.(\w+)\}", queues[queue_key[1]]["name"])
        assert variable and variable_default(variable[1]) == source.queue


def cron_values(field: str, low: int, high: int) -> set[int]:
    """The values a cron field names, UNIX or AWS flavour (*, ?, a, a-b, x/s, a-b/s, lists)."""
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            start, end = (int(x) for x in base.split("-"))
        else:
            start = int(base)
            end = high if step_text else start
        values |= set(range(start, end + 1, step))
    return values


def fires_at(minutes: str, hours: str) -> set[tuple[int, int]]:
    return {(h, m) for h in cron_values(hours, 0, 23) for m in cron_values(minutes, 0, 59)}


def test_cron_reader_tells_schedules_apart() -> None:
    assert fires_at("7-59/15", "*") == fires_at("7/15", "*")
    assert fires_at("*/10", "*") == fires_at("0/10", "*")
    assert fires_at("5", "*") != fires_at("7", "*")
    assert fires_at("17", "3") != fires_at("17", "*")


def test_every_schedule_of_app_py_has_a_cron_with_the_manifest_expression() -> None:
    from app import app

    sources = [e for e in app.event_sources if isinstance(e, ScheduledEventConfig)]
    assert len(sources) == 4
    crons = resources("scaleway_function_cron")
    for source in sources:
        manifest = _function_for(source.name)
        assert manifest.cron is not None
        function = functions()[manifest.name]
        mine = [c for c in crons.values()
                if c["function_id"] == reference("scaleway_function", function)]
        assert len(mine) == 1, source.name
        assert mine[0]["schedule"] == manifest.cron
        assert mine[0]["args"] == "{}"
        # The manifest's UNIX cron fires when app.py's Cron does (UTC, daily pattern).
        expression = source.schedule_expression
        assert isinstance(expression, Cron)
        minute, hour, dom, month, dow = manifest.cron.split()
        assert (dom, month, dow) == ("*", "*", "*")
        assert (expression.day_of_month, expression.month, expression.day_of_week,
                expression.year) == ("*", "*", "?", "*")
        assert fires_at(minute, hour) == fires_at(str(expression.minutes),
                                                  str(expression.hours)), source.name


def test_no_function_is_left_without_its_trigger() -> None:
    crons = {c["function_id"] for c in resources("scaleway_function_cron").values()}
    triggers = {t["function_id"] for t in resources("scaleway_function_trigger").values()}
    for f in RUN_AS_FUNCTION:
        ref = reference("scaleway_function", functions()[f.name])
        assert (ref in crons) == (f.trigger == "schedule"), f.name
        assert (ref in triggers) == (f.trigger == "queue"), f.name
    # A container unit is only ever called (by issuing): no schedule, no queue.
    assert {f.trigger for f in RUN_AS_CONTAINER} == {"invoke"}
    assert not {"scaleway_container_cron", "scaleway_container_trigger"} & set(tree()["resource"])


# -- network and database ----------------------------------------------------------------

def _db_users() -> set[str]:
    """Functions holding a database password."""
    return {name for name, body in functions().items()
            if env_names(body.get("secret_environment_variables"))
            & {"EINVOICE_DB_APP_PASSWORD", "EINVOICE_DB_OWNER_PASSWORD"}}


def test_every_function_that_reaches_the_database_is_on_the_private_network() -> None:
    network = "${scaleway_vpc_private_network.main.id}"
    users = _db_users()
    assert users == {f.name for f in RUN_AS_FUNCTION}
    for name in users:
        assert functions()[name]["private_network_id"] == network, name
    # The containers reach no database; Scaleway routes only their outgoing
    # traffic through a Private Network, so attaching one would open a route
    # to PostgreSQL and serve no caller.
    for name, body in containers().items():
        assert "private_network_id" not in body, name
    # Removed in provider 2.75 (every namespace takes Private Networks now).
    assert "activate_vpc_integration" not in resources("scaleway_function_namespace")["main"]
    database = resources("scaleway_rdb_instance")["main"]
    assert one_block(database, "private_network")["pn_id"] == network


def test_the_database_is_private_encrypted_and_backed_up_hourly_for_30_days() -> None:
    database = resources("scaleway_rdb_instance")["main"]
    assert database["engine"] == "PostgreSQL-15"
    assert "load_balancer" not in database  # no public endpoint
    assert one_block(database, "private_network")["enable_ipam"] is True
    assert database["encryption_at_rest"] is True
    assert database["disable_backup"] is False
    assert database["backup_schedule_frequency"] == 1  # hours
    assert database["backup_schedule_retention"] == 30  # days
    assert database["backup_same_region"] is True
    assert database["region"] == "${var.region}"
    assert variable_default("region") == "fr-par"


def test_roles_are_plain_users_and_terraform_never_reapplies_their_grants() -> None:
    users = resources("scaleway_rdb_user")
    assert set(users) == {"owner", "app"}
    assert all(user["is_admin"] is False for user in users.values())
    assert variable_default("db_owner_user") == Settings.from_environment().db_owner_user
    assert variable_default("db_app_user") == Settings.from_environment().db_app_user
    privileges = resources("scaleway_rdb_privilege")
    assert privileges["owner"]["permission"] == "all"
    assert privileges["app"]["permission"] == "readonly"
    for privilege in privileges.values():
        assert one_block(privilege, "lifecycle")["ignore_changes"] == ["permission"]


def test_only_the_migration_job_holds_the_owner_password() -> None:
    holders = {name for name, body in functions().items()
               if "EINVOICE_DB_OWNER_PASSWORD"
               in env_names(body.get("secret_environment_variables"))
               | env_names(body.get("environment_variables"))}
    assert holders == {"migrate"}
    assert "EINVOICE_DB_APP_PASSWORD" not in env_names(
        functions()["migrate"].get("secret_environment_variables"))
    namespace = resources("scaleway_function_namespace")["main"]
    assert not env_names(namespace.get("secret_environment_variables"))


def test_migrations_run_at_deploy_before_the_code_that_needs_them() -> None:
    job = resources("terraform_data")["migrate"]
    assert '${filesha256("${var.package_dir}/migrate.zip")}' in job["triggers_replace"]
    command = one_block(job, "provisioner")["local-exec"]
    assert "X-Auth-Token: $MIGRATE_TOKEN" in command["command"]
    assert "--fail" in command["command"]
    environment = command["environment"]
    assert environment["MIGRATE_TOKEN"] == "${scaleway_function_token.migrate.token}"
    assert resources("scaleway_function_token")["migrate"]["function_id"] == \
        "${scaleway_function.migrate.id}"
    for name, body in functions().items():
        if name != "migrate":
            assert "${terraform_data.migrate}" in body["depends_on"], name


def test_only_issuing_can_call_the_conformance_check() -> None:
    """The callers' key may call private containers, and the conformance check
    is the only container: the permission set opens it and nothing else."""
    assert set(resources("scaleway_container")) == {"conformance_check"}
    assert "scaleway_container_token" not in tree()["resource"]  # deprecated by the provider
    assert set(resources("scaleway_function_token")) == {"migrate"}
    policies = resources("scaleway_iam_policy")
    (rule,) = policies["conformance_callers"]["rule"]
    assert rule == {"project_ids": ["${var.project_id}"],
                    "permission_set_names": ["ContainersPrivateAccess"]}
    assert policies["conformance_callers"]["application_id"] == \
        "${scaleway_iam_application.conformance_callers.id}"
    private_access = {name for name, body in policies.items() for r in body["rule"]
                      if any(p.endswith("PrivateAccess") for p in r["permission_set_names"])}
    assert private_access == {"conformance_callers"}
    key = resources("scaleway_iam_api_key")["conformance_callers"]
    assert key["application_id"] == "${scaleway_iam_application.conformance_callers.id}"
    assert tree()["locals"]["conformance_secrets"] == {"EINVOICE_CONFORMANCE_CHECK_TOKEN":
                                                       "${scaleway_iam_api_key.conformance_callers"
                                                       ".secret_key}"}
    assert tree()["locals"]["conformance_env"] == {
        "EINVOICE_CONFORMANCE_CHECK": "${scaleway_container.conformance_check.public_endpoint}"}
    callers = {name for name, body in functions().items()
               if "EINVOICE_CONFORMANCE_CHECK_TOKEN"
               in env_names(body.get("secret_environment_variables"))}
    assert callers == {"api", "issue-invoice"}
    for name in callers:
        assert "EINVOICE_CONFORMANCE_CHECK" in env_names(functions()[name]["environment_variables"])
    # The key's secret goes to that local and to its Secret Manager copy, nowhere else.
    assert tf_text().count("scaleway_iam_api_key.conformance_callers.secret_key") == 2
    assert tree()["locals"]["secret_values"].count(
        "scaleway_iam_api_key.conformance_callers.secret_key") == 1


# -- queues ------------------------------------------------------------------------------

def test_every_queue_has_a_dead_letter_queue() -> None:
    queues = resources("scaleway_mnq_sqs_queue")
    sources = {key: q for key, q in queues.items() if "dead_letter_queue" in q}
    dead = {key for key in queues if key not in sources}
    assert len(sources) == 2 and len(dead) == 2
    targets = set()
    for key, queue in sources.items():
        block = one_block(queue, "dead_letter_queue")
        target = re.fullmatch(r"\$\{scaleway_mnq_sqs_queue\.(\w+)\.id\}", block["id"])
        assert target and target[1] in dead, key
        targets.add(target[1])
        assert block["max_receive_count"] == 5
    assert targets == dead  # one dead-letter queue each


def test_functions_publish_with_queue_keys_that_cannot_receive_or_manage() -> None:
    credentials = resources("scaleway_mnq_sqs_credentials")
    functions_key = one_block(credentials["functions"], "permissions")
    assert functions_key == {"can_manage": False, "can_publish": True, "can_receive": False}
    holders = {name for name, body in functions().items()
               if "EINVOICE_SQS_SECRET_ACCESS_KEY"
               in env_names(body.get("secret_environment_variables"))}
    assert holders == {"api"}  # the only producer (POST /invoice-batches)


# -- archive -----------------------------------------------------------------------------

def test_the_bucket_locks_every_version_in_compliance_mode_for_11_years() -> None:
    bucket = resources("scaleway_object_bucket")["archive"]
    assert bucket["object_lock_enabled"] is True
    assert one_block(bucket, "versioning")["enabled"] is True
    assert bucket["force_destroy"] is False
    lock = resources("scaleway_object_bucket_lock_configuration")["archive"]
    assert lock["bucket"] == "${scaleway_object_bucket.archive.name}"
    retention = one_block(one_block(lock, "rule"), "default_retention")
    assert retention == {"mode": "COMPLIANCE", "years": 11}


FORBIDDEN_TO_ALL = {
    "*", "s3:*", "s3:DeleteObject", "s3:PutBucketVersioning",
    "s3:PutBucketObjectLockConfiguration", "s3:PutObjectLegalHold",
    "s3:PutLifecycleConfiguration", "s3:PutBucketAcl", "s3:PutObjectAcl",
    "s3:PutBucketCORS", "s3:PutBucketWebsite", "s3:DeleteBucketWebsite",
}


def _statements() -> Iterator[tuple[list[str], list[str], dict[str, Any]]]:
    policy = tree()["locals"]["archive_bucket_policy"]
    assert policy["Version"] == "2023-04-17"
    for statement in policy["Statement"]:
        actions = statement["Action"]
        principal = statement["Principal"]
        assert principal != "*", statement["Sid"]
        principals = principal["SCW"]
        yield ([actions] if isinstance(actions, str) else actions,
               [principals] if isinstance(principals, str) else principals, statement)


def test_the_bucket_policy_allows_no_delete_marker_or_lock_change_to_anyone() -> None:
    policy = resources("scaleway_object_bucket_policy")["archive"]
    assert policy["policy"] == "${jsonencode(local.archive_bucket_policy)}"
    assert "${scaleway_object_bucket_lock_configuration.archive}" in policy["depends_on"]
    statements = list(_statements())
    assert len(statements) >= 5
    for actions, _, statement in statements:
        assert statement["Effect"] == "Allow"  # Scaleway ignores Deny: allow-list only
        assert not set(actions) & FORBIDDEN_TO_ALL, statement["Sid"]


def test_only_the_retention_purge_may_delete_a_version() -> None:
    purge = "application_id:${scaleway_iam_application.retention_purge.id}"
    granted = [principals for actions, principals, _ in _statements()
               if "s3:DeleteObjectVersion" in actions]
    assert granted == [[purge]]
    # and its key reaches the function only when asked for
    assert resources("scaleway_iam_api_key")["retention_purge"]["count"] == \
        "${var.retention_purge_archive_key ? 1 : 0}"
    assert variable_default("retention_purge_archive_key") is False


def test_writers_get_object_access_and_the_probe_only_sees_the_bucket() -> None:
    by_sid = {statement["Sid"]: (actions, principals) for actions, principals, statement
              in _statements()}
    probe_actions, probe = by_sid["HealthProbeSeesTheBucket"]
    assert probe_actions == ["s3:ListBucket"]
    assert probe == ["application_id:${scaleway_iam_application.probe.id}"]
    deployer_actions, deployer = by_sid["DeployerReadsTheBucketConfiguration"]
    assert deployer == ["${var.deployer_principals}"]
    assert all(a.startswith(("s3:Get", "s3:List")) or a == "s3:PutBucketTagging"
               for a in deployer_actions)


# -- IAM, keys and secrets ---------------------------------------------------------------

def test_key_manager_access_is_limited_to_the_master_key_and_the_invoicing_group() -> None:
    key = resources("scaleway_key_manager_key")["master"]
    assert (key["usage"], key["algorithm"], key["unprotected"]) == \
        ("symmetric_encryption", "aes_256_gcm", False)
    grants = {name: [rule for rule in body["rule"]
                     if any(p.startswith("KeyManager") for p in rule["permission_set_names"])]
              for name, body in resources("scaleway_iam_policy").items()}
    assert {name for name, rules in grants.items() if rules} == {"invoicing"}
    for rule in grants["invoicing"]:
        assert set(rule["permission_set_names"]) == {"KeyManagerKeyEncrypt", "KeyManagerKeyDecrypt"}
        assert rule["condition"] == 'resource.id == \\"${local.master_key_id}\\"'
    holders = {name for name, body in functions().items()
               if "EINVOICE_SCW_SECRET_KEY" in env_names(body.get("secret_environment_variables"))}
    assert holders == {"api", "issue-invoice", "archive-sweep"}


# What each interpolated value stands for when the settings are built below:
# a value of the shape the deployment gives (the provider fills the rest).
_SAMPLE = {
    "EINVOICE_DB_HOST": "172.16.32.10", "EINVOICE_DB_PORT": "5432",
    "EINVOICE_DB_NAME": "einvoice", "EINVOICE_DB_APP_USER": "einvoice_app",
    "EINVOICE_DB_OWNER_USER": "einvoice_owner",
    "EINVOICE_S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud", "EINVOICE_S3_REGION": "fr-par",
    "EINVOICE_ARCHIVE_BUCKET": "einvoice-archive",
    "EINVOICE_SQS_ENDPOINT_URL": "https://sqs.mnq.fr-par.scaleway.com",
    "EINVOICE_SQS_REGION": "fr-par", "EINVOICE_LEDGER_QUEUE": "einvoice-ledger-append",
    "EINVOICE_INVOICE_QUEUE": "einvoice-invoice-issue",
    "EINVOICE_SCW_KEY_ID": "0b0f5c4e-1f2a-4c3d-8e9f-a0b1c2d3e4f5", "EINVOICE_SCW_REGION": "fr-par",
    "EINVOICE_MAIL_FROM": "einvoice <no-reply@example.fr>",
    "EINVOICE_SMTP_HOST": "smtp.tem.scw.cloud",
    "EINVOICE_SMTP_PORT": "587", "EINVOICE_SMTP_USER": "project-id",
    "EINVOICE_SIGNUP_CONFIRM_URL": "https://app.example.fr/signup/confirm",
    "EINVOICE_FRONTEND_ORIGIN": "https://app.example.fr",
    "EINVOICE_CONFORMANCE_CHECK": "https://einvoiceab12cd34-conformance-check.functions.fnc.fr-par.scw.cloud",
    "EINVOICE_OTS_CALENDARS": "https://a.pool.opentimestamps.org",
    "EINVOICE_CLOSING_PUBLIC_KEYS": "ab" * 32,
}


def _environment_values(expression: Any) -> dict[str, str]:
    """The variables an environment expression sets, with the literal values
    the HCL gives and a sample for each interpolated one."""
    values: dict[str, str] = {}
    if isinstance(expression, dict):
        for name, value in expression.items():
            literal = isinstance(value, str) and "${" not in value
            values[str(name)] = value if literal else _SAMPLE.get(str(name), "")
        return values
    if not isinstance(expression, str):
        return values
    for local in re.findall(r"local\.(\w+)", expression):
        if local == "db_ca_env":  # the instance certificate, in pieces
            values["EINVOICE_DB_CA_PEM_1"] = "-----BEGIN CERTIFICATE-----\nMIIB"
            values["EINVOICE_DB_CA_PEM_2"] = "\n-----END CERTIFICATE-----\n"
        else:
            values |= _environment_values(tree()["locals"][local])
    for name in re.findall(r"\b(EINVOICE_[A-Z0-9_]+) =", expression):  # conditional maps
        values[name] = _SAMPLE.get(name, "")
    return values


def test_every_function_can_build_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The namespace's variables reach every function: each function's whole
    environment (namespace, its own, its secrets) must be settings the code
    accepts, or the function fails on its first call (the migration job's
    failure stops the apply)."""
    namespace = resources("scaleway_function_namespace")["main"]
    shared = _environment_values(namespace["environment_variables"])
    container_shared = _environment_values(
        resources("scaleway_container_namespace")["main"].get("environment_variables"))
    for name, body in units().items():
        inherited = container_shared if name in containers() else shared
        environment = inherited | _environment_values(body.get("environment_variables"))
        for secret in env_names(body.get("secret_environment_variables")):
            environment[secret] = "a-secret-value"
        missing = {k for k, v in environment.items() if v == ""}
        assert not missing, f"{name}: give {missing} a sample in _SAMPLE"
        for variable in [v for v in os.environ if v.startswith("EINVOICE_")]:
            monkeypatch.delenv(variable)
        for variable, value in environment.items():
            monkeypatch.setenv(variable, value)
        try:
            Settings.from_environment()
        except ValueError as exc:
            pytest.fail(f"{name}: its environment is refused by the settings: {exc}")


def test_no_plain_secret_is_an_environment_variable() -> None:
    secrets = {f"EINVOICE_{name}" for name in secret_setting_names()}
    namespaces = [("function namespace", resources("scaleway_function_namespace")["main"]),
                  ("container namespace", resources("scaleway_container_namespace")["main"])]
    bodies = [*namespaces, *units().items()]
    for name, body in bodies:
        plain_names = env_names(body.get("environment_variables"))
        assert not plain_names & secrets, name
        # nothing that looks like a credential under another name either
        assert not [n for n in plain_names
                    if re.search(r"PASSWORD|SECRET|TOKEN|_KEY_PEM", n)], name
    for name, body in units().items():
        assert env_names(body.get("secret_environment_variables")) <= secrets, name
    for name in containers():  # the conformance check holds no secret at all
        assert "secret_environment_variables" not in containers()[name], name


def test_every_secret_is_kept_in_secret_manager() -> None:
    names = set(re.findall(r'"([a-z0-9-]+)"', tree()["locals"]["secret_names"]))
    for wanted in ("db-admin-password", "db-owner-password", "db-app-password", "smtp-password",
                   "closing-key-pem", "queue-secret-key", "invoicing-iam-secret-key",
                   "conformance-check-token"):
        assert wanted in names
    assert resources("scaleway_secret")["all"]["for_each"] == "${toset(local.secret_names)}"
    assert resources("scaleway_secret_version")["all"]["data"] == \
        "${local.secret_values[each.key]}"


def test_every_einvoice_variable_is_a_setting_or_a_listed_new_name() -> None:
    known = setting_names() | CONTRACT_NEW_NAMES
    used = {name.removeprefix("EINVOICE_") for name in re.findall(r"EINVOICE_[A-Z0-9_]+",
                                                                   tf_text())}
    assert len(used) > 25
    unknown = {name for name in used
               if name not in known and not name.startswith(PROPOSED_NEW_PREFIXES)}
    assert unknown == set()


def test_the_listed_new_names_are_not_stale() -> None:
    """Names the contract adds that this branch's settings already read are fine;
    a listed name the Terraform does not use is a typo in the list."""
    used = set(re.findall(r"EINVOICE_([A-Z0-9_]+)", tf_text()))
    unused = CONTRACT_NEW_NAMES - used - {"DB_CA_FILE", "DB_CA_PEM", "KMS_KEY_ID"}
    assert unused == set()


# -- alerts ------------------------------------------------------------------------------

def test_each_operator_alert_has_a_rule_and_someone_to_mail() -> None:
    rules = tree()["locals"]["log_alert_rules"]["rules"]
    alerts = {rule["alert"]: rule["expr"] for rule in rules}
    for metric in ("ArchiveFailures", "AnchoringFailures", "WitnessAlarms", "RateLimitRefusals",
                   "ArchiveMissing"):
        assert f'|= `\\"{metric}\\"`' in alerts[metric], metric
    for condition in ("ArchiveTampered", "ServiceUnavailable", "QueueConsumerFailures"):
        assert condition in alerts
    dead = tree()["locals"]["metric_alert_rules"]
    assert "DeadLetteredMessages" in dead and "dead_letter_queues" in dead
    manager = resources("scaleway_cockpit_alert_manager")["main"]
    dynamic = manager["dynamic"][0]["contact_points"]
    assert dynamic["for_each"] == "${var.alert_emails}"
    token = one_block(resources("scaleway_cockpit_token")["rules"], "scopes")
    assert {k for k, v in token.items() if v is True} == {"setup_logs_rules",
                                                           "setup_metrics_rules"}


def test_every_service_unavailable_line_and_deferred_witness_alerts_the_operator() -> None:
    """Each ServiceUnavailable logs its `alert` when it is answered 503 (the
    answer says the operator is alerted), and a witness that could not be
    written after sealing is logged too: a rule must match each line."""
    from chalicelib.domain.errors import ServiceUnavailable

    kinds, lines = [ServiceUnavailable], {"closing witness deferred to the schedule"}
    _import_all_of_chalicelib()  # a kind is a subclass only once its module is imported
    while kinds:
        kind = kinds.pop()
        if kind.__module__.startswith("chalicelib."):  # not the tests' own kinds
            lines.add(kind.alert)
        kinds += kind.__subclasses__()
    patterns = []
    for rule in tree()["locals"]["log_alert_rules"]["rules"]:
        patterns += re.findall(r"\|~ `([^`]*)`", rule["expr"])
        patterns += [re.escape(p) for p in re.findall(r"\|= `([^`]*)`", rule["expr"])]
    unmatched = {line for line in lines if not any(re.search(p, line) for p in patterns)}
    assert unmatched == set()


# -- formatting --------------------------------------------------------------------------

def test_terraform_fmt_is_clean() -> None:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH: the format check must run "
                    "(the machine image has it at /usr/local/bin/terraform)")
    result = subprocess.run([binary, "fmt", "-check", "-recursive", str(TREE)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _import_all_of_chalicelib() -> None:
    import importlib
    import pkgutil

    import chalicelib

    for module in pkgutil.walk_packages(chalicelib.__path__, "chalicelib."):
        importlib.import_module(module.name)
