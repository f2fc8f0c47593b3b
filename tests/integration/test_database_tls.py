"""Database TLS, verify-full, against a real PostgreSQL 15 that requires it.

A dedicated small cluster (as the unprivileged `postgres` user, like the
suite's) with ssl=on, a server certificate for `localhost` issued by a test CA,
and pg_hba allowing TCP only over TLS (hostssl). Each refusal below is a
connection the attacker in the middle would need to succeed.
"""

from __future__ import annotations

import datetime
import os
import pwd
import shutil
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pg8000.exceptions import DatabaseError, InterfaceError

from chalicelib.adapters.postgres import Database, app_connector, tls_context
from chalicelib.config import ConfigurationError, Settings, settings
from devstack.postgres import PostgresServer, new_password, server_folder
from devstack.stack import free_port
from tests.conftest import remember

APP_PASSWORD = new_password()
OWNER_PASSWORD = new_password()
remember(APP_PASSWORD, OWNER_PASSWORD)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificate_authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def server_certificate(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                       names: list[str]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class TlsCluster:
    server: PostgresServer
    ca_pem: str
    ca_file: Path
    other_ca_file: Path

    def settings(self, **overrides: str) -> Settings:
        values = {"EINVOICE_DB_HOST": "localhost", "EINVOICE_DB_PORT": str(self.server.port),
                  "EINVOICE_DB_NAME": "einvoice", "EINVOICE_DB_APP_USER": "einvoice_app",
                  "EINVOICE_DB_APP_PASSWORD": APP_PASSWORD,
                  "EINVOICE_DB_OWNER_USER": "einvoice_owner",
                  "EINVOICE_DB_OWNER_PASSWORD": OWNER_PASSWORD, "EINVOICE_DB_TLS": "true",
                  "EINVOICE_DB_CA_FILE": str(self.ca_file), **overrides}
        saved = dict(os.environ)
        try:
            os.environ.update({k: v for k, v in values.items() if v != ""})
            for name in [k for k, v in values.items() if v == ""]:
                os.environ.pop(name, None)
            return Settings.from_environment()
        finally:
            os.environ.clear()
            os.environ.update(saved)


def _give_to_server_user(path: Path, mode: int) -> None:
    os.chmod(path, mode)
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture(scope="module")
def cluster() -> Iterator[TlsCluster]:
    base = Path(tempfile.mkdtemp(prefix="einvoice-tls-"))
    folder = server_folder(base / "postgres")
    server = PostgresServer(folder, free_port(), new_password(), durable=False)
    remember(server.superuser_password)
    ca_key, ca = certificate_authority("einvoice test CA")
    _, other_ca = certificate_authority("another CA")
    key, cert = server_certificate(ca_key, ca, ["localhost"])
    try:
        server.initialise()
        data = server.data_dir
        (data / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (data / "server.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        _give_to_server_user(data / "server.crt", 0o644)
        _give_to_server_user(data / "server.key", 0o600)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                       "ssl_min_protocol_version = 'TLSv1.2'\n")
        # TCP only over TLS: a client that does not ask for it finds no entry.
        (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 scram-sha-256\n")
        server.start()
        admin = server.connect()  # pg8000's default: TLS without verification
        try:
            admin.run(f"CREATE ROLE einvoice_owner LOGIN CREATEROLE PASSWORD "
                      f"'{OWNER_PASSWORD}'")
            admin.run("CREATE DATABASE einvoice OWNER einvoice_owner ENCODING 'UTF8' "
                      "TEMPLATE template0")
        finally:
            admin.close()
        ca_file = base / "ca.pem"
        ca_file.write_text(pem(ca))
        other_ca_file = base / "other-ca.pem"
        other_ca_file.write_text(pem(other_ca))
        yield TlsCluster(server, pem(ca), ca_file, other_ca_file)
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def in_tls(conn: pg8000.native.Connection) -> bool:
    [[on]] = conn.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    return bool(on)


def owner_connect(config: Settings) -> pg8000.native.Connection:
    from chalicelib.migrate import owner_connector

    return owner_connector(config)()


def test_the_migration_job_and_the_app_connect_verified_with_the_ca_file(
        cluster: TlsCluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The deploy's path end to end over verify-full: the job (as the owner, not
    a superuser) creates the app role and migrates; the app then connects."""
    import json

    from functions.migrate import handle

    config = cluster.settings()
    for name, value in {"EINVOICE_DB_HOST": "localhost",
                        "EINVOICE_DB_PORT": str(cluster.server.port),
                        "EINVOICE_DB_TLS": "true", "EINVOICE_DB_CA_FILE": str(cluster.ca_file),
                        "EINVOICE_DB_OWNER_PASSWORD": OWNER_PASSWORD,
                        "EINVOICE_DB_APP_PASSWORD": APP_PASSWORD}.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    try:
        answer = handle({"headers": {"X-Request-Id": "tls-deploy"}}, None)
    finally:
        monkeypatch.undo()
        settings.cache_clear()
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 200, body
    assert body["status"] == "migrated" and body["applied"]

    database = Database(app_connector(config))
    try:
        database.ping()
        with database.transaction(None) as conn:
            assert in_tls(conn)
            [[user]] = conn.run("SELECT current_user")
            assert user == "einvoice_app"
    finally:
        database.close()
    printed = capsys.readouterr()
    assert "BEGIN CERTIFICATE" not in printed.out + printed.err


def test_the_ca_given_inline_works_too(cluster: TlsCluster) -> None:
    config = cluster.settings(EINVOICE_DB_CA_FILE="", EINVOICE_DB_CA_PEM=cluster.ca_pem)
    assert config.db_ca_file is None and config.db_ca_pem
    conn = owner_connect(config)
    try:
        assert in_tls(conn)
    finally:
        conn.close()


def _refusal(config: Settings) -> BaseException:
    with pytest.raises((InterfaceError, DatabaseError, ssl.SSLError)) as caught:
        owner_connect(config).close()
    refused: BaseException = caught.value
    return refused


def _verification_failure(error: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def test_a_server_certificate_from_another_ca_is_refused(cluster: TlsCluster) -> None:
    refused = _verification_failure(_refusal(cluster.settings(
        EINVOICE_DB_CA_FILE=str(cluster.other_ca_file))))
    assert refused is not None and "certificate verify failed" in str(refused)


def test_a_host_name_the_certificate_does_not_name_is_refused(cluster: TlsCluster) -> None:
    """127.0.0.1 is the same server, with the right CA: the name is not in the
    certificate, so the connection is refused all the same."""
    refused = _verification_failure(_refusal(cluster.settings(EINVOICE_DB_HOST="127.0.0.1")))
    assert refused is not None and "mismatch" in str(refused)


def test_without_a_ca_the_system_store_is_used_and_knows_no_test_ca(
        cluster: TlsCluster) -> None:
    config = cluster.settings(EINVOICE_DB_CA_FILE="")
    context = tls_context(config)
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert _verification_failure(_refusal(config)) is not None


def test_the_given_ca_is_the_only_one_trusted() -> None:
    """A configured CA replaces the system store, it is not added to it."""
    _, ca = certificate_authority("only this one")
    config = Settings(db_tls=True, db_ca_pem=pem(ca))
    context = tls_context(config)
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "only this one"),),)]
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_tls_off_is_plain_tcp_and_a_server_requiring_tls_refuses_it(
        cluster: TlsCluster) -> None:
    config = cluster.settings(EINVOICE_DB_TLS="false", EINVOICE_DB_CA_FILE="",
                              EINVOICE_DB_HOST="127.0.0.1")
    assert tls_context(config) is False  # never pg8000's silent, unverified try
    refused = _refusal(config)
    assert isinstance(refused, DatabaseError)
    assert refused.args[0]["C"] == "28000" and "no encryption" in refused.args[0]["M"]


@pytest.mark.parametrize(("values", "rule"), [
    ({"db_tls": True, "db_ca_pem": "x", "db_ca_file": "/etc/hostname"}, "not both"),
    ({"db_ca_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"},
     "need db_tls=true"),
    ({"db_tls": True, "db_ca_pem": "not a certificate at all, secret-ish text"},
     "must hold PEM certificates"),
    ({"db_tls": True, "db_ca_file": "/nonexistent/ca.pem"}, "not a readable file"),
])
def test_a_bad_ca_setting_is_named_never_echoed(values: dict[str, Any], rule: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Settings(**values)
    assert rule in str(refused.value)
    assert "secret-ish" not in str(refused.value) and "AAAA" not in str(refused.value)


def test_a_broken_ca_pem_is_refused_when_loaded_without_quoting_it() -> None:
    config = Settings(db_tls=True, db_ca_pem="-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                                             "-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match="cannot be loaded") as refused:
        tls_context(config)
    assert "bm90" not in str(refused.value)
    assert "db_ca_pem" not in repr(config) and "bm90" not in repr(config)


def test_the_application_role_got_a_unique_password(cluster: TlsCluster) -> None:
    """The app role the job created logs in with the password it was given, and
    only with it (scram-sha-256 over TLS)."""
    app_connector(cluster.settings())().close()
    wrong = cluster.settings(EINVOICE_DB_APP_PASSWORD=f"wrong-{uuid.uuid4().hex}")
    with pytest.raises(DatabaseError) as refused:
        app_connector(wrong)().close()
    assert refused.value.args[0]["C"] == "28P01"
