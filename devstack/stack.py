"""The embedded stack: PostgreSQL 15 + moto server, provisioned and migrated.

Used by `bin/run` (durable cluster in .stack/, fixed ports) and by the tests
(throw-away cluster in a temp folder, free ports, fsync off).
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from chalicelib.adapters.keys import LocalKeyFile
from chalicelib.adapters.signing import LocalSigningKey
from chalicelib.config import Settings
from devstack import database, objectstore
from devstack.objectstore import MotoServer
from devstack.postgres import PostgresServer, new_password, server_folder

LOCAL_REGION = "eu-west-3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Secrets:
    superuser: str = field(default_factory=new_password)
    owner: str = field(default_factory=new_password)
    app: str = field(default_factory=new_password)

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        """Local secrets persist with the cluster they belong to (mode 0600)."""
        if path.exists():
            return cls(**json.loads(path.read_text()))
        secrets = cls()
        path.touch(mode=0o600)
        path.write_text(json.dumps(secrets.__dict__))
        return secrets


@dataclass
class LocalStack:
    base_dir: Path
    pg_port: int
    s3_port: int
    secrets: Secrets
    durable: bool = True
    # The queues on a moto server of their own (the fault suite stops one
    # service without the other); None: on the S3 server's.
    sqs_port: int | None = None

    def __post_init__(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.postgres = PostgresServer(server_folder(self.base_dir / "postgres"),
                                       self.pg_port, self.secrets.superuser, self.durable)
        self.moto = MotoServer(self.s3_port, self.base_dir / "moto.log")
        self.queues = self.moto if self.sqs_port is None else \
            MotoServer(self.sqs_port, self.base_dir / "moto-sqs.log")
        self.master_key_file = self.base_dir / "master-keys.json"
        self.mail_outbox = self.base_dir / "mail"  # what would be mailed: .eml files
        if not self.master_key_file.exists():
            LocalKeyFile.create(self.master_key_file)
        self.closing_key_file = self.base_dir / "closing-key.pem"
        if not self.closing_key_file.exists():
            LocalSigningKey.create(self.closing_key_file)

    def env(self) -> dict[str, str]:
        """What a function needs in its environment to run against this stack:
        the application role only, never the owner's password."""
        return {
            "EINVOICE_DB_HOST": "127.0.0.1",
            "EINVOICE_DB_PORT": str(self.pg_port),
            "EINVOICE_DB_NAME": "einvoice",
            "EINVOICE_DB_APP_USER": "einvoice_app",
            "EINVOICE_DB_APP_PASSWORD": self.secrets.app,
            "EINVOICE_DB_OWNER_USER": "einvoice_owner",
            "EINVOICE_S3_ENDPOINT_URL": self.moto.url,
            "EINVOICE_SQS_ENDPOINT_URL": self.queues.url,
            "EINVOICE_S3_REGION": LOCAL_REGION,
            "EINVOICE_S3_ADDRESSING_STYLE": "path",
            "EINVOICE_ARCHIVE_BUCKET": "einvoice-archive",
            "EINVOICE_LEDGER_QUEUE": "einvoice-ledger-append",
            "EINVOICE_INVOICE_QUEUE": "einvoice-invoice-issue",
            "EINVOICE_MASTER_KEY_FILE": str(self.master_key_file),
            "EINVOICE_CLOSING_KEY_FILE": str(self.closing_key_file),
            "EINVOICE_S3_ACCESS_KEY_ID": "local",
            "EINVOICE_S3_SECRET_ACCESS_KEY": "local",
            # The queues' own keys, apart from the S3 keys (as on Scaleway).
            "EINVOICE_SQS_ACCESS_KEY_ID": "local-queue",
            "EINVOICE_SQS_SECRET_ACCESS_KEY": "local-queue",
            "EINVOICE_MAIL_OUTBOX_DIR": str(self.mail_outbox),
        }

    def settings(self) -> Settings:
        """Settings including the owner's password (migrations, tests)."""
        saved = dict(os.environ)
        try:
            os.environ.update(self.env())
            os.environ["EINVOICE_DB_OWNER_PASSWORD"] = self.secrets.owner
            return Settings.from_environment()
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def start(self) -> None:
        for port, what in ((self.pg_port, "PostgreSQL"), (self.s3_port, "moto"),
                           (self.sqs_port, "moto (queues)")):
            if port is not None and port_in_use(port):
                raise RuntimeError(f"port {port} for {what} is already in use on 127.0.0.1")
        self.postgres.initialise()
        self.postgres.start()
        try:
            database.provision(self.postgres, self.settings())
            self.moto.start()
            if self.queues is not self.moto:
                self.queues.start()
            objectstore.provision(self.settings())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.queues is not self.moto:
            self.queues.stop()
        self.moto.stop()
        self.postgres.stop()
