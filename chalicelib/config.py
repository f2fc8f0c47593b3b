"""All settings come from the environment (prefix EINVOICE_), validated once.

Pointing the system at Scaleway, OVH or AWS is configuration only: the code sees
an endpoint URL, a region, an addressing style and a checksum policy.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EINVOICE_", extra="ignore")

    db_host: str = "127.0.0.1"
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_name: str = "einvoice"
    db_tls: bool = False
    # The application role: not the owner, no superuser, no BYPASSRLS.
    db_app_user: str = "einvoice_app"
    db_app_password: SecretStr = SecretStr("")
    # The owner role runs migrations only; functions never need its password.
    db_owner_user: str = "einvoice_owner"
    db_owner_password: SecretStr = SecretStr("")

    s3_endpoint_url: str | None = None
    s3_region: str = "eu-west-3"
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # boto3 >= 1.36 sends CRC32 checksums by default; some S3-compatible
    # providers reject them, so this is a per-provider setting.
    s3_checksums: Literal["when_supported", "when_required"] = "when_required"
    archive_bucket: str = "einvoice-archive"
    # Explicit keys for S3-compatible providers (Scaleway, OVH); unset on AWS,
    # where the function's role provides credentials.
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None

    # argon2id cost (RFC 9106 "low memory" defaults) and session lifetimes.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=65536, ge=1024)
    password_parallelism: int = Field(default=4, ge=1)
    session_lifetime_minutes: int = Field(default=720, ge=1)
    session_idle_minutes: int = Field(default=30, ge=1)
    # Per minute, shared by all instances (PostgreSQL); 429 with Retry-After beyond.
    login_per_ip_per_minute: int = Field(default=5, ge=1)
    login_per_account_per_minute: int = Field(default=5, ge=1)
    signup_per_ip_per_minute: int = Field(default=5, ge=1)
    writes_per_user_per_minute: int = Field(default=60, ge=1)
    second_factor_per_user_per_minute: int = Field(default=5, ge=1)
    # Lock-out: after this many wrong passwords for an account from one address
    # (or wrong codes for a user), a wait of lockout_base_seconds that doubles
    # with each further failure, up to the cap; for an account from all
    # addresses, later and shorter (a remote attacker cannot keep it out long).
    lockout_after_failures: int = Field(default=5, ge=1)
    lockout_base_seconds: int = Field(default=30, ge=1)
    lockout_cap_seconds: int = Field(default=3600, ge=1, le=86400)
    lockout_account_after_failures: int = Field(default=20, ge=1)
    lockout_account_cap_seconds: int = Field(default=900, ge=1, le=86400)

    # The keys port's local adapter: a 0600 JSON file of master keys.
    master_key_file: Path | None = None
    # The closing signer's local adapter: a 0600 PEM file holding one Ed25519 key.
    closing_key_file: Path | None = None

    # Mail (sign-up confirmation): an SMTP relay when smtp_host is set, else
    # .eml files in mail_outbox_dir (local development); neither: sign-up is off.
    mail_from: str = "einvoice <no-reply@einvoice.localhost>"
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = True
    mail_outbox_dir: Path | None = None
    # Where the confirmation link points (the frontend's page); the token goes
    # in the fragment, which browsers never send to a server or a Referer.
    signup_confirm_url: str = "http://127.0.0.1:8000/signup/confirm"
    signup_confirm_hours: int = Field(default=24, ge=1, le=48)
    signup_per_email_per_minute: int = Field(default=2, ge=1)
    signup_per_email_per_day: int = Field(default=5, ge=1)

    # The one browser origin allowed to call the API cross-origin (CORS), e.g.
    # https://app.example.fr; unset: no CORS header at all (same origin only).
    frontend_origin: str | None = None

    sqs_endpoint_url: str | None = None
    ledger_queue: str = "einvoice-ledger-append"
    invoice_queue: str = "einvoice-invoice-issue"  # bulk issuing (POST /invoice-batches)
    # The timeout configured for the function on Scaleway, where the platform
    # tells a function no remaining time: the anchor_retries budget counts
    # down from it. Unset: that schedule assumes 30 seconds.
    function_timeout_seconds: int | None = Field(default=None, ge=10, le=3600)

    # Where issuing runs the schematron conformance check (EN 16931, BR-FR):
    # "local", a worker process beside the function (it needs saxonche, which
    # only the conformance-check package holds); "aws-lambda:<function name or
    # ARN>", that function invoked directly; or the https URL of the private
    # Scaleway conformance-check, called with conformance_check_token (the
    # function's token: a secret). docs/deploy/packaging.md.
    conformance_check: str = "local"
    conformance_check_token: SecretStr | None = None
    conformance_check_timeout_seconds: float = Field(default=20, gt=0, le=120)

    @field_validator("conformance_check")
    @classmethod
    def _a_known_checker(cls, value: str) -> str:
        if value == "local":
            return value
        if value.startswith("aws-lambda:") and _LAMBDA_FUNCTION.fullmatch(
                value.removeprefix("aws-lambda:")):
            return value
        parts = urlsplit(value)
        if (parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))) \
                and parts.hostname and not parts.username and not parts.password \
                and not parts.fragment:
            return value
        raise ValueError("must be local, aws-lambda:<function name or ARN>, or an https URL "
                         "(http only on localhost; no credentials in it)")

    @model_validator(mode="after")
    def _a_remote_check_is_authenticated(self) -> Settings:
        if self.conformance_check.startswith(("https://", "http://")) and not (
                self.conformance_check_token and self.conformance_check_token.get_secret_value()):
            raise ValueError("conformance_check_token is required with a conformance_check URL "
                             "(the private function's token)")
        return self

    @model_validator(mode="after")
    def _mail_is_never_in_clear_off_this_machine(self) -> Settings:
        """Confirmation links and SMTP credentials travel encrypted, except on loopback."""
        link = urlsplit(self.signup_confirm_url)
        if link.scheme != "https" and not (link.scheme == "http" and _loopback(link.hostname)):
            raise ValueError("signup_confirm_url must be https (http only on localhost)")
        if self.smtp_host and not self.smtp_starttls and not _loopback(self.smtp_host):
            raise ValueError("smtp_starttls may be off only for a relay on localhost")
        return self

    @field_validator("frontend_origin")
    @classmethod
    def _one_exact_origin(cls, value: str | None) -> str | None:
        """An origin exactly as a browser sends it: never a wildcard, a list or
        a path; HTTPS, except plain HTTP on loopback for local development."""
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        loopback = _loopback(parts.hostname)
        if (parts.scheme != "https" and not (parts.scheme == "http" and loopback)) \
                or not parts.hostname or "*" in value or "," in value or " " in value \
                or parts.path or parts.query or parts.fragment or parts.username \
                or value != f"{parts.scheme}://{parts.netloc}".lower():
            raise ValueError("must be one origin such as https://app.example.fr "
                             "(lower case, no path, no wildcard; http only on localhost)")
        return value

    # Anchoring (best-effort, after each closing and by the anchor_retries
    # schedule): OpenTimestamps calendars, comma-separated in
    # EINVOICE_OTS_CALENDARS (e.g. https://a.pool.opentimestamps.org), and an
    # RFC 3161 time-stamping authority whose tokens are verified against the
    # PEM in tsa_certificate_file (its root CA; intermediates and the TSA's own
    # certificate, to pin it, may follow). Unset: nothing is anchored there.
    ots_calendars: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tsa_url: str | None = None
    tsa_certificate_file: Path | None = None

    @field_validator("ots_calendars", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("ots_calendars")
    @classmethod
    def _calendars_are_https(cls, value: list[str]) -> list[str]:
        urls = [_anchor_url(url) for url in value]
        if len(set(urls)) != len(urls):
            raise ValueError("a calendar is listed twice")
        return urls

    @field_validator("tsa_url")
    @classmethod
    def _tsa_is_https(cls, value: str | None) -> str | None:
        return _anchor_url(value) if value else None

    @model_validator(mode="after")
    def _tsa_tokens_are_verified(self) -> Settings:
        if self.tsa_url and self.tsa_certificate_file is None:
            raise ValueError("tsa_url needs tsa_certificate_file (the PEM its tokens are "
                             "verified against)")
        return self


# A Lambda function as Invoke names it: a name, a partial or a full ARN, maybe a qualifier.
_LAMBDA_FUNCTION = re.compile(
    r"(arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:function:)?"
    r"[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")  # as 0017_anchors.sql


def _anchor_url(value: str) -> str:
    """An anchoring endpoint: https (http only on loopback), a host, maybe a
    path; no credentials, query or fragment. Stored without a trailing slash."""
    parts = urlsplit(value)
    if (parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname))) \
            or not parts.hostname or parts.username or parts.password or parts.query \
            or parts.fragment or len(value) > 300 or not _ENDPOINT.fullmatch(value):
        raise ValueError("must be an https URL such as https://a.pool.opentimestamps.org "
                         "(http only on localhost; no credentials, query or fragment)")
    return value.rstrip("/")


def _loopback(host: str | None) -> bool:
    return host in {"localhost", "127.0.0.1", "::1"}


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
