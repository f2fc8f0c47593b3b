"""All settings come from the environment (prefix EINVOICE_), checked once.

Pointing the system at Scaleway, OVH or AWS is configuration only: the code sees
an endpoint URL, a region, an addressing style and a checksum policy.

Plain Python on purpose: every function reads its settings on a cold start,
and pydantic with pydantic-settings cost about 150 ms there before a single
setting was read (docs/benchmarks.md#cold-start). A refused setting raises
ConfigurationError naming the variable and the rule, never the value.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from chalicelib.secret import Secret

PREFIX = "EINVOICE_"


def _limits(*, ge: float | None = None, le: float | None = None,
            gt: float | None = None) -> dict[str, float | None]:
    """A numeric setting's bounds (field metadata)."""
    return {"ge": ge, "le": le, "gt": gt}


class ConfigurationError(ValueError):
    """Settings that are refused or contradict each other, named in the
    message (never a value: it may be a secret)."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting, typed. `Settings.from_environment()` reads them (what
    `settings()` caches); `Settings(**values)` takes values directly, as text
    the way the environment gives them or already typed, and checks them the
    same way. Unknown names are refused, so a typo cannot pass unnoticed."""

    db_host: str = "127.0.0.1"
    db_port: int = field(default=5432, metadata=_limits(ge=1, le=65535))
    db_name: str = "einvoice"
    db_tls: bool = False
    # The application role: not the owner, no superuser, no BYPASSRLS.
    db_app_user: str = "einvoice_app"
    db_app_password: Secret = Secret("")  # noqa: RUF009 (immutable)
    # The owner role runs migrations only; functions never need its password.
    db_owner_user: str = "einvoice_owner"
    db_owner_password: Secret = Secret("")  # noqa: RUF009 (immutable)

    s3_endpoint_url: str | None = None
    s3_region: str = "eu-west-3"
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # boto3 >= 1.36 sends CRC32 checksums by default; some S3-compatible
    # providers reject them, so this is a per-provider setting.
    s3_checksums: Literal["when_supported", "when_required"] = "when_required"
    archive_bucket: str = "einvoice-archive"
    # Explicit keys for S3-compatible providers (Scaleway, OVH); unset on AWS,
    # where the function's role provides credentials.
    s3_access_key_id: Secret | None = None
    s3_secret_access_key: Secret | None = None

    # argon2id cost (RFC 9106 "low memory" defaults) and session lifetimes.
    password_time_cost: int = field(default=3, metadata=_limits(ge=1))
    password_memory_kib: int = field(default=65536, metadata=_limits(ge=1024))
    password_parallelism: int = field(default=4, metadata=_limits(ge=1))
    session_lifetime_minutes: int = field(default=720, metadata=_limits(ge=1))
    session_idle_minutes: int = field(default=30, metadata=_limits(ge=1))
    # Per minute, shared by all instances (PostgreSQL); 429 with Retry-After beyond.
    login_per_ip_per_minute: int = field(default=5, metadata=_limits(ge=1))
    login_per_account_per_minute: int = field(default=5, metadata=_limits(ge=1))
    signup_per_ip_per_minute: int = field(default=5, metadata=_limits(ge=1))
    writes_per_user_per_minute: int = field(default=60, metadata=_limits(ge=1))
    second_factor_per_user_per_minute: int = field(default=5, metadata=_limits(ge=1))
    # Lock-out: after this many wrong passwords for an account from one address
    # (or wrong codes for a user), a wait of lockout_base_seconds that doubles
    # with each further failure, up to the cap; for an account from all
    # addresses, later and shorter (a remote attacker cannot keep it out long).
    lockout_after_failures: int = field(default=5, metadata=_limits(ge=1))
    lockout_base_seconds: int = field(default=30, metadata=_limits(ge=1))
    lockout_cap_seconds: int = field(default=3600, metadata=_limits(ge=1, le=86400))
    lockout_account_after_failures: int = field(default=20, metadata=_limits(ge=1))
    lockout_account_cap_seconds: int = field(default=900, metadata=_limits(ge=1, le=86400))

    # The keys port's local adapter: a 0600 JSON file of master keys.
    master_key_file: Path | None = None
    # The closing signer's local adapter: a 0600 PEM file holding one Ed25519 key.
    closing_key_file: Path | None = None

    # Mail (sign-up confirmation): an SMTP relay when smtp_host is set, else
    # .eml files in mail_outbox_dir (local development); neither: sign-up is off.
    mail_from: str = "einvoice <no-reply@einvoice.localhost>"
    smtp_host: str | None = None
    smtp_port: int = field(default=587, metadata=_limits(ge=1, le=65535))
    smtp_user: str | None = None
    smtp_password: Secret | None = None
    smtp_starttls: bool = True
    mail_outbox_dir: Path | None = None
    # Where the confirmation link points (the frontend's page); the token goes
    # in the fragment, which browsers never send to a server or a Referer.
    signup_confirm_url: str = "http://127.0.0.1:8000/signup/confirm"
    signup_confirm_hours: int = field(default=24, metadata=_limits(ge=1, le=48))
    signup_per_email_per_minute: int = field(default=2, metadata=_limits(ge=1))
    signup_per_email_per_day: int = field(default=5, metadata=_limits(ge=1))

    # The one browser origin allowed to call the API cross-origin (CORS), e.g.
    # https://app.example.fr; unset: no CORS header at all (same origin only).
    frontend_origin: str | None = None

    sqs_endpoint_url: str | None = None
    ledger_queue: str = "einvoice-ledger-append"
    invoice_queue: str = "einvoice-invoice-issue"  # bulk issuing (POST /invoice-batches)
    # The timeout configured for the function on Scaleway, where the platform
    # tells a function no remaining time: the anchor_retries budget counts
    # down from it. Unset: that schedule assumes 30 seconds.
    function_timeout_seconds: int | None = field(default=None, metadata=_limits(ge=10, le=3600))

    # --- Keys port, closing key, queue credentials (keys helper) ------------
    # Where master keys live (docs/deploy/keys.md): the local key file above
    # (the default), AWS KMS (kms_key_id: a key ARN, never an alias) or
    # Scaleway Key Manager (scw_key_id, scw_region, and scw_secret_key: the IAM
    # API secret key the functions call it with). With a provider, a
    # master_key_file still set only unwraps (the move off the file).
    key_provider: Literal["local", "aws-kms", "scaleway-key-manager"] = "local"
    kms_key_id: str | None = None
    scw_key_id: str | None = None
    scw_region: str = "fr-par"
    scw_secret_key: Secret | None = None
    # Key Manager's API; another base only for a local stand-in (http on loopback).
    scw_api_url: str = "https://api.scaleway.com"
    # The closing signer's Ed25519 key as PEM text (a secret: Scaleway secret
    # environment variable, or CLOSING_KEY_PEM_SECRET_ARN on AWS), instead of
    # closing_key_file.
    closing_key_pem: Secret | None = None
    # The Ed25519 public keys (64 hex digits each, comma-separated) that online
    # verification and proofs trust besides the signer's own, which is always
    # trusted: the retired keys, kept here after a rotation so the closings and
    # witnesses they signed still verify. Never read from the database.
    closing_public_keys: list[str] = field(default_factory=list)
    # The SQS client's own credentials (Scaleway issues queue keys apart from
    # S3 keys); unset: the default credential chain (the function's role on
    # AWS). sqs_region unset: s3_region.
    sqs_region: str | None = None
    sqs_access_key_id: Secret | None = None
    sqs_secret_access_key: Secret | None = None

    def _keys_provider_is_complete(self) -> None:
        if self.key_provider == "aws-kms" and not KMS_KEY_ARN.fullmatch(self.kms_key_id or ""):
            raise ValueError("key_provider aws-kms needs kms_key_id: the key's ARN "
                             "(arn:aws:kms:<region>:<account>:key/<id>), not an alias")
        if self.key_provider == "scaleway-key-manager":
            if not self.scw_key_id or not _UUID.fullmatch(self.scw_key_id):
                raise ValueError("key_provider scaleway-key-manager needs scw_key_id: the "
                                 "Key Manager key's id (a UUID)")
            if self.scw_secret_key is None or not self.scw_secret_key.get_secret_value():
                raise ValueError("key_provider scaleway-key-manager needs scw_secret_key: "
                                 "the IAM API secret key allowed to use that key")
        if not _SCW_REGION.fullmatch(self.scw_region):
            raise ValueError("scw_region must be a Scaleway region such as fr-par")
        api = urlsplit(self.scw_api_url)
        if (api.scheme != "https" and not (api.scheme == "http" and _loopback(api.hostname))) \
                or not api.hostname or api.username or api.password or api.query \
                or api.fragment:
            raise ValueError("scw_api_url must be an https URL such as https://api.scaleway.com "
                             "(http only on localhost; no credentials, query or fragment)")
        if self.closing_key_pem is not None and self.closing_key_file is not None:
            raise ValueError("closing_key_pem and closing_key_file are both set: keep one")
        if (self.sqs_access_key_id is None) != (self.sqs_secret_access_key is None):
            raise ValueError("sqs_access_key_id and sqs_secret_access_key go together: set "
                             "both, or neither (the default credential chain)")


    # --- end of the keys helper's block -----------------------------------


    # Where issuing runs the schematron conformance check (EN 16931, BR-FR):
    # "local", a worker process beside the function (it needs saxonche, which
    # only the conformance-check package holds); "aws-lambda:<function name or
    # ARN>", that function invoked directly; or the https URL of the private
    # Scaleway conformance-check, called with conformance_check_token (the
    # function's token: a secret). docs/deploy/packaging.md.
    conformance_check: str = "local"
    conformance_check_token: Secret | None = None
    conformance_check_timeout_seconds: float = field(default=20, metadata=_limits(gt=0, le=120))

    @classmethod
    def _raw_ed25519_keys(cls, value: list[str]) -> list[str]:
        keys = [key.lower() for key in value]
        if not all(_RAW_ED25519.fullmatch(key) for key in keys):
            raise ValueError("each key must be a raw Ed25519 public key: 64 hex digits")
        if len(set(keys)) != len(keys):
            raise ValueError("a key is listed twice")
        return keys

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

    def _a_remote_check_is_authenticated(self) -> None:
        if self.conformance_check.startswith(("https://", "http://")) and not (
                self.conformance_check_token and self.conformance_check_token.get_secret_value()):
            raise ValueError("conformance_check_token is required with a conformance_check URL "
                             "(the private function's token)")


    def _mail_is_never_in_clear_off_this_machine(self) -> None:
        """Confirmation links and SMTP credentials travel encrypted, except on loopback."""
        link = urlsplit(self.signup_confirm_url)
        if link.scheme != "https" and not (link.scheme == "http" and _loopback(link.hostname)):
            raise ValueError("signup_confirm_url must be https (http only on localhost)")
        if self.smtp_host and not self.smtp_starttls and not _loopback(self.smtp_host):
            raise ValueError("smtp_starttls may be off only for a relay on localhost")


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
    ots_calendars: list[str] = field(default_factory=list)
    tsa_url: str | None = None
    tsa_certificate_file: Path | None = None

    @classmethod
    def _calendars_are_https(cls, value: list[str]) -> list[str]:
        urls = [_anchor_url(url) for url in value]
        if len(set(urls)) != len(urls):
            raise ValueError("a calendar is listed twice")
        return urls

    @classmethod
    def _tsa_is_https(cls, value: str | None) -> str | None:
        return _anchor_url(value) if value else None

    def _tsa_tokens_are_verified(self) -> None:
        if self.tsa_url and self.tsa_certificate_file is None:
            raise ValueError("tsa_url needs tsa_certificate_file (the PEM its tokens are "
                             "verified against)")


    # ---- Plateforme Agréée (issue 16; per-tenant PAs come later) ----------
    # The platform-level PA: its Flow Service base (https://{host}/flow-service),
    # its OAuth2 token URL and client credentials (client_credentials grant),
    # and the Directory's base when it is not the Flow Service's. Unset
    # pa_base_url: no PA, nothing is deposited. https only (http on loopback:
    # the local stand-in, devstack/pa_standin.py). docs/pa.md.
    pa_base_url: str | None = None
    pa_directory_url: str | None = None
    pa_token_url: str | None = None
    pa_client_id: str | None = None
    pa_client_secret: Secret | None = None

    @classmethod
    def _pa_url(cls, value: str) -> str:
        return _service_url(value, "https://pa.example.fr/flow-service")

    def _pa_is_complete(self) -> None:
        others = (self.pa_directory_url, self.pa_token_url, self.pa_client_id,
                  self.pa_client_secret)
        if self.pa_base_url is None:
            if any(value is not None for value in others):
                raise ValueError("the pa_ settings need pa_base_url (the PA's Flow Service)")
            return
        if not self.pa_token_url or not self.pa_client_id or not self.pa_client_secret:
            raise ValueError("pa_base_url needs pa_token_url, pa_client_id and "
                             "pa_client_secret (the PA's OAuth2 client credentials)")

    # ---- end of the Plateforme Agréée block ----

    # ---- Database TLS (block kept by the "ops" work: TLS, migrations job) ----
    # With db_tls, the connection is verify-full: the server's certificate must
    # chain to the CA given here and to it only (not the system's store), and
    # name db_host. db_ca_file: a PEM bundle on disk; db_ca_pem: the same PEM
    # inline (e.g. Scaleway's instance certificate, the RDS regional bundle).
    # Neither: the system's CAs, hostname still checked. Not a secret, but
    # never printed (repr=False): a log has no use for it.
    db_ca_file: Path | None = None
    db_ca_pem: str | None = field(default=None, repr=False)

    def _database_ca_is_usable(self) -> None:
        """One CA source, only with TLS on (a CA without TLS would be ignored in
        silence), and one that looks like PEM certificates; named, never quoted."""
        if self.db_ca_pem is not None and not self.db_ca_pem.strip():
            object.__setattr__(self, "db_ca_pem", None)
        if self.db_ca_file is not None and self.db_ca_pem is not None:
            raise ValueError("set db_ca_file or db_ca_pem, not both")
        if (self.db_ca_file is not None or self.db_ca_pem is not None) and not self.db_tls:
            raise ValueError("db_ca_file / db_ca_pem need db_tls=true")
        if self.db_ca_pem is not None and "-----BEGIN CERTIFICATE-----" not in self.db_ca_pem:
            raise ValueError("db_ca_pem must hold PEM certificates (-----BEGIN CERTIFICATE-----)")
        if self.db_ca_file is not None and not self.db_ca_file.is_file():
            raise ValueError("db_ca_file is not a readable file")

    # ---- end of the database TLS block ----

    def __post_init__(self) -> None:
        for spec in _specs():
            value = getattr(self, spec.name)
            try:
                value = spec.convert(value)
                check = _FIELD_CHECKS.get(spec.name)
                if check is not None and value is not None:
                    value = getattr(self, check)(value)
            except ValueError as exc:
                variable = f"{PREFIX}{spec.name.upper()}"
                raise ConfigurationError(f"{spec.name} ({variable}): {exc}") from None
            object.__setattr__(self, spec.name, value)
        for check in _TOGETHER_CHECKS:
            try:
                getattr(self, check)()
            except ConfigurationError:
                raise
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None,
                         **overrides: Any) -> Settings:
        """The settings the environment gives (names case-insensitive, other
        variables ignored), `overrides` over them; then each setting X that
        only EINVOICE_X_SECRET_ARN names, read from Secrets Manager."""
        upper = {key.upper(): value for key, value in
                 (os.environ if environ is None else environ).items()}
        values: dict[str, Any] = {}
        for spec in _specs():
            variable = f"{PREFIX}{spec.name.upper()}"
            if variable in upper:
                values[spec.name] = upper[variable]
        _database_ca_in_pieces(upper, values)
        values.update(overrides)
        values.update(_values_named_by_arn(upper, values))
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        """These settings with some changed, checked again as a whole."""
        return replace(self, **changes)


# Checks of one setting, after its type: each returns the value kept.
_FIELD_CHECKS = {"conformance_check": "_a_known_checker",
                 "frontend_origin": "_one_exact_origin",
                 "ots_calendars": "_calendars_are_https", "tsa_url": "_tsa_is_https",
                 "closing_public_keys": "_raw_ed25519_keys",
                 **dict.fromkeys(("pa_base_url", "pa_directory_url", "pa_token_url"),
                                 "_pa_url")}
# Checks of settings together, in this order, once every one has its type.
_TOGETHER_CHECKS = ("_keys_provider_is_complete", "_a_remote_check_is_authenticated",
                    "_mail_is_never_in_clear_off_this_machine",
                    "_tsa_tokens_are_verified", "_database_ca_is_usable",
                    "_pa_is_complete")



# A Lambda function as Invoke names it: a name, a partial or a full ARN, maybe a qualifier.
_LAMBDA_FUNCTION = re.compile(
    r"(arn:aws[a-zA-Z-]*:lambda:[a-z]{2}(-gov)?-[a-z]+-\d:\d{12}:function:)?"
    r"[a-zA-Z0-9_-]{1,64}(:(\$LATEST|[a-zA-Z0-9_-]{1,128}))?")
_ENDPOINT = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?")  # as 0017_anchors.sql


def _anchor_url(value: str) -> str:
    return _service_url(value, "https://a.pool.opentimestamps.org")


def _service_url(value: str, example: str) -> str:
    """A remote service's endpoint (anchoring, the PA): https (http only on
    loopback), a host, maybe a path; no credentials, query or fragment.
    Stored without a trailing slash."""
    parts = urlsplit(value)
    if (parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname))) \
            or not parts.hostname or parts.username or parts.password or parts.query \
            or parts.fragment or len(value) > 300 or not _ENDPOINT.fullmatch(value):
        raise ValueError(f"must be an https URL such as {example} "
                         "(http only on localhost; no credentials, query or fragment)")
    return value.rstrip("/")


def _loopback(host: str | None) -> bool:
    return host in {"localhost", "127.0.0.1", "::1"}


# --- Secret settings from AWS Secrets Manager (keys helper) -----------------

# Each ARN's first group is its region (where its client runs).
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:key/[A-Za-z0-9-]{1,128}$")
_RAW_ED25519 = re.compile(r"^[0-9a-f]{64}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SCW_REGION = re.compile(r"^[a-z]{2}-[a-z]{3}$")
SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,512}$")


def secret_settings() -> tuple[str, ...]:
    """Every secret setting (Secret): each may instead be named by an ARN."""
    return tuple(spec.name for spec in _specs() if spec.secret)


# Not secret, but too long for Lambda's 4 KB of environment beside the rest
# (a CA certificate, every closing key still trusted): on AWS they come from a
# Secrets Manager secret too, named the same way.
LONG_SETTINGS = ("db_ca_pem", "closing_public_keys")


def settings_named_by_arn() -> tuple[str, ...]:
    """The settings EINVOICE_X_SECRET_ARN may give: the secret ones and the long ones."""
    return secret_settings() + LONG_SETTINGS


def _values_named_by_arn(environ: Mapping[str, str],
                         given: Mapping[str, Any]) -> dict[str, Any]:
    """On AWS secrets are never plain environment values: for a secret setting
    X, EINVOICE_X_SECRET_ARN names a Secrets Manager secret whose text is X,
    read when the settings are first built (once per container). The long
    settings may come the same way (their text is then checked as any value).
    Setting both X and X_SECRET_ARN is a ConfigurationError. Without any ARN,
    nothing is imported (no AWS client on a cold start)."""
    found: dict[str, Any] = {}
    secret = set(secret_settings())
    for name in settings_named_by_arn():
        variable = f"{PREFIX}{name.upper()}"
        arn = environ.get(f"{variable}_SECRET_ARN", "").strip()
        if not arn:
            continue
        if name in given:  # even empty: it would win over the ARN
            raise ConfigurationError(f"{variable} and {variable}_SECRET_ARN are both set: "
                                     "keep one (on AWS, the ARN)")
        if not SECRET_ARN.fullmatch(arn):
            raise ConfigurationError(f"{variable}_SECRET_ARN is not a Secrets Manager "
                                     "secret ARN")
        from chalicelib.adapters.secrets import read_secret
        from chalicelib.domain.errors import SecretUnavailable

        try:
            text = read_secret(arn)
        except SecretUnavailable as exc:
            raise SecretUnavailable(f"{variable}_SECRET_ARN: {exc}") from None
        found[name] = Secret(text) if name in secret else text
    return found


def _database_ca_in_pieces(environ: Mapping[str, str], values: dict[str, Any]) -> None:
    """Scaleway caps every environment value at 1000 characters, and an
    instance certificate is longer: there it comes as DB_CA_PEM_1, _2, ...
    (consecutive from 1), joined here in order. Never both forms (nor with
    DB_CA_PEM_SECRET_ARN, AWS's form: refused as both set)."""
    prefix = f"{PREFIX}DB_CA_PEM_"
    numbered = {name[len(prefix):]: value for name, value in environ.items()
                if name.startswith(prefix) and name != f"{prefix}SECRET_ARN"}
    if not numbered:
        return
    if not all(key.isdigit() for key in numbered) \
            or sorted(int(key) for key in numbered) != list(range(1, len(numbered) + 1)):
        raise ConfigurationError("db_ca_pem pieces must be DB_CA_PEM_1, DB_CA_PEM_2, ... "
                                 "with no gap")
    if values.get("db_ca_pem"):
        raise ConfigurationError("set db_ca_pem or its pieces db_ca_pem_1.., not both")
    values["db_ca_pem"] = "".join(numbered[str(i)] for i in range(1, len(numbered) + 1))


# --- How a setting's text becomes its type -----------------------------------

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)")


@dataclass(frozen=True)
class _Spec:
    """One setting: its name, how its text converts, whether it is secret."""

    name: str
    convert: Callable[[Any], Any]
    secret: bool


def _to_text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be text")
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _to_text(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("must be true or false")


def _number(kind: type, limits: Mapping[str, float | None]) -> Callable[[Any], Any]:
    pattern, noun = (_INTEGER, "an integer") if kind is int else (_DECIMAL, "a number")
    low, high, above = limits.get("ge"), limits.get("le"), limits.get("gt")
    bounds = ", ".join(part for part in (
        f"at least {low:g}" if low is not None else "",
        f"above {above:g}" if above is not None else "",
        f"at most {high:g}" if high is not None else "") if part)
    rule = f"must be {noun}" + (f" ({bounds})" if bounds else "")

    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(rule)
        if isinstance(value, str):
            if not pattern.fullmatch(value.strip()):
                raise ValueError(rule)
            value = kind(value.strip())
        elif kind is float and isinstance(value, int):
            value = float(value)
        elif not isinstance(value, kind):
            raise ValueError(rule)
        if (low is not None and value < low) or (high is not None and value > high) \
                or (above is not None and value <= above):
            raise ValueError(rule)
        return value
    return convert


def _choice(allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return str(value)
    return convert


def _to_secret(value: Any) -> Secret:
    return value if isinstance(value, Secret) else Secret(_to_text(value))


def _to_path(value: Any) -> Path:
    return value if isinstance(value, Path) else Path(_to_text(value))


def _to_list(value: Any) -> list[str]:
    """Comma-separated text, or a list already."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)) and all(isinstance(part, str) for part in value):
        return list(value)
    raise ValueError("must be a comma-separated list")


def _converter(annotation: Any, limits: Mapping[str, float | None]
               ) -> tuple[Callable[[Any], Any], bool]:
    """(convert, is it secret) for a setting's annotation."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        optional, annotation = True, members[0]
    if annotation is bool:
        convert: Callable[[Any], Any] = _to_bool
    elif annotation in (int, float):
        convert = _number(annotation, limits)
    elif get_origin(annotation) is Literal:
        convert = _choice(get_args(annotation))
    elif annotation is Secret:
        convert = _to_secret
    elif annotation is Path:
        convert = _to_path
    elif get_origin(annotation) is list:
        convert = _to_list
    elif annotation is str:
        convert = _to_text
    else:  # a new kind of setting needs its converter here
        raise TypeError(f"no converter for {annotation!r}")
    if not optional:
        return convert, annotation is Secret

    def maybe(value: Any) -> Any:
        """Unset, or set empty (as Terraform passes an unset variable): None."""
        return None if value is None or value == "" else convert(value)
    return maybe, annotation is Secret


@lru_cache(maxsize=1)
def _specs() -> tuple[_Spec, ...]:
    hints = get_type_hints(Settings)
    specs = []
    for setting in fields(Settings):
        convert, secret = _converter(hints[setting.name], setting.metadata)
        specs.append(_Spec(setting.name, convert, secret))
    return tuple(specs)


# --- end of the keys helper's block -----------------------------------------


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()
