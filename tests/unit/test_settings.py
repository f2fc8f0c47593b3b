"""The settings reader's own rules: how environment text becomes each type,
what is refused and how it is named, and that reading settings costs a cold
start no pydantic (docs/benchmarks.md#cold-start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.config import ConfigurationError, Settings
from chalicelib.secret import Secret

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" t ", True),
    ("false", False), ("0", False), ("No", False), ("off", False), ("f", False)])
def test_booleans_read_the_usual_spellings(text: str, expected: bool) -> None:
    assert Settings.from_environment({"EINVOICE_DB_TLS": text}).db_tls is expected


@pytest.mark.parametrize("text", ["", "2", "enabled", "truee"])
def test_anything_else_is_not_a_boolean(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^db_tls \(EINVOICE_DB_TLS\): must be true "
                                                 "or false$"):
        Settings.from_environment({"EINVOICE_DB_TLS": text})


def test_numbers_are_read_and_bounded() -> None:
    read = Settings.from_environment({"EINVOICE_DB_PORT": " 6543 ",
                                      "EINVOICE_CONFORMANCE_CHECK_TIMEOUT_SECONDS": "2.5",
                                      "EINVOICE_FUNCTION_TIMEOUT_SECONDS": "60"})
    assert (read.db_port, read.conformance_check_timeout_seconds,
            read.function_timeout_seconds) == (6543, 2.5, 60)
    assert isinstance(Settings().conformance_check_timeout_seconds, float)


@pytest.mark.parametrize(("variable", "text", "rule"), [
    ("DB_PORT", "0", "must be an integer (at least 1, at most 65535)"),
    ("DB_PORT", "65536", "must be an integer (at least 1, at most 65535)"),
    ("DB_PORT", "5432.0", "must be an integer"),
    ("DB_PORT", "1e3", "must be an integer"),
    ("DB_PORT", "", "must be an integer"),
    ("LOCKOUT_CAP_SECONDS", "86401", "at most 86400"),
    ("CONFORMANCE_CHECK_TIMEOUT_SECONDS", "0", "must be a number (above 0, at most 120)"),
    ("CONFORMANCE_CHECK_TIMEOUT_SECONDS", "nan", "must be a number"),
    ("FUNCTION_TIMEOUT_SECONDS", "9", "at least 10"),
    ("S3_ADDRESSING_STYLE", "Path", "must be one of auto, path, virtual"),
    ("KEY_PROVIDER", "vault", "must be one of local, aws-kms, scaleway-key-manager"),
])
def test_a_refused_value_names_the_setting_and_the_rule_not_the_value(
        variable: str, text: str, rule: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environment({f"EINVOICE_{variable}": text})
    message = str(refused.value)
    assert message.startswith(f"{variable.lower()} (EINVOICE_{variable}): ")
    assert rule in message


@pytest.mark.parametrize("variable", ["KEY_PROVIDER", "DB_PORT", "DB_TLS", "FRONTEND_ORIGIN",
                                      "CONFORMANCE_CHECK", "TSA_URL"])
def test_the_refused_text_is_never_quoted(variable: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings.from_environment({f"EINVOICE_{variable}": "leaked-s3cr3t://x"})
    assert "s3cr3t" not in str(refused.value) and "s3cr3t" not in repr(refused.value)


def test_names_are_case_insensitive_and_other_variables_ignored() -> None:
    read = Settings.from_environment({"einvoice_db_name": "books", "EINVOICE_NOT_A_SETTING": "x",
                                      "DB_NAME": "other"})
    assert read.db_name == "books"


def test_overrides_win_over_the_environment() -> None:
    read = Settings.from_environment({"EINVOICE_DB_NAME": "books"}, db_name="ledger")
    assert read.db_name == "ledger"


def test_an_empty_optional_setting_is_unset() -> None:
    """As Terraform passes a variable left empty: no Path('.'), no empty key."""
    read = Settings.from_environment({"EINVOICE_MASTER_KEY_FILE": "",
                                      "EINVOICE_S3_ACCESS_KEY_ID": "",
                                      "EINVOICE_S3_SECRET_ACCESS_KEY": "",
                                      "EINVOICE_SQS_ENDPOINT_URL": "",
                                      "EINVOICE_FUNCTION_TIMEOUT_SECONDS": ""})
    assert (read.master_key_file, read.s3_access_key_id, read.s3_secret_access_key,
            read.sqs_endpoint_url, read.function_timeout_seconds) == (None,) * 5


def test_typed_values_and_text_are_the_same_settings() -> None:
    assert Settings(db_port="5433", db_tls="yes", master_key_file="/k.json",  # type: ignore[arg-type]
                    smtp_password="pw") == Settings(  # type: ignore[arg-type]
        db_port=5433, db_tls=True, master_key_file=Path("/k.json"), smtp_password=Secret("pw"))


def test_a_wrong_type_is_refused_not_kept() -> None:
    with pytest.raises(ConfigurationError, match=r"^db_host \(EINVOICE_DB_HOST\): must be text$"):
        Settings(db_host=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must be an integer"):
        Settings(db_port=True)


def test_an_unknown_setting_passed_directly_is_refused() -> None:
    with pytest.raises(TypeError, match="db_hots"):
        Settings(db_hots="x")  # type: ignore[call-arg]


def test_the_calendar_list_is_comma_separated() -> None:
    read = Settings.from_environment({"EINVOICE_OTS_CALENDARS": " https://a.example , ,"
                                                                "https://b.example/ "})
    assert read.ots_calendars == ["https://a.example", "https://b.example"]


def test_secrets_never_show_themselves() -> None:
    read = Settings.from_environment({"EINVOICE_SMTP_PASSWORD": "hunter2-smtp",
                                      "EINVOICE_DB_APP_PASSWORD": "hunter2-db"})
    for shown in (repr(read), str(read), f"{read.smtp_password}", repr(read.db_app_password)):
        assert "hunter2" not in shown
    assert read.smtp_password is not None
    assert read.smtp_password.get_secret_value() == "hunter2-smtp"


def test_settings_are_frozen_and_changed_only_through_a_new_check() -> None:
    read = Settings()
    with pytest.raises(AttributeError):
        read.db_port = 1  # type: ignore[misc]
    assert read.with_changes(db_port="7000").db_port == 7000
    with pytest.raises(ConfigurationError, match="frontend_origin"):
        read.with_changes(frontend_origin="https://*.example.fr")


def test_reading_the_settings_imports_no_pydantic() -> None:
    """What made schedules and health miss the 300 ms cold start (150 ms of it)."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("EINVOICE_")}
    code = ("import json, sys; from chalicelib.config import settings; settings(); "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120, env=clean).stdout
    loaded = json.loads(out)
    assert [m for m in loaded if m.split(".")[0] in {"pydantic", "pydantic_core",
                                                      "pydantic_settings"}] == []
