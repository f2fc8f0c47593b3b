"""An embedded PostgreSQL 15 cluster for local runs and tests.

PostgreSQL refuses to run as root, so when we are root every server command goes
through `runuser -u postgres --` and the data folder is owned by that user. The
server listens on 127.0.0.1 only (TCP, no Unix socket) with scram-sha-256 auth.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pg8000.native

SERVER_USER = "postgres"


def _pg_bin() -> Path:
    path = Path(os.environ.get("EINVOICE_PG_BIN", "/usr/lib/postgresql/15/bin"))
    if not (path / "initdb").exists():
        raise RuntimeError(
            f"PostgreSQL 15 binaries not found in {path}; install postgresql-15 "
            "or set EINVOICE_PG_BIN"
        )
    return path


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return cmd


def _server_uid_gid() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _reachable_by_server_user(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = subprocess.run(
        _as_server_user(["test", "-x", str(path)]), capture_output=True, check=False
    )
    return probe.returncode == 0


def server_folder(wanted: Path) -> Path:
    """Return a folder the server user can own and reach.

    A clone inside a 0700 folder (e.g. `mktemp -d`) is not reachable by the
    `postgres` user; then the data lives under the system temp folder and
    `wanted` becomes a symlink to it, so the project still finds it there.
    """
    if wanted.is_symlink() and wanted.resolve().exists():
        return wanted.resolve()
    wanted.parent.mkdir(parents=True, exist_ok=True)
    if _reachable_by_server_user(wanted.parent):
        wanted.mkdir(exist_ok=True)
        target = wanted
    else:
        target = Path(tempfile.mkdtemp(prefix="einvoice-pg-"))
        if wanted.is_symlink():
            wanted.unlink()
        wanted.symlink_to(target)
    ids = _server_uid_gid()
    if ids:
        os.chown(target, *ids)
    os.chmod(target, 0o700)
    return target


@dataclass
class PostgresServer:
    """One cluster: `data_dir` holds it, `port` on 127.0.0.1 serves it."""

    base_dir: Path
    port: int
    superuser_password: str
    durable: bool = True  # tests pass False: fsync off, never for a real run

    superuser: str = "postgres"

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def initialise(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        ids = _server_uid_gid()
        pwfile = self.base_dir / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        os.chmod(pwfile, 0o600)
        if ids:
            os.chown(pwfile, *ids)
        try:
            subprocess.run(
                _as_server_user([
                    str(_pg_bin() / "initdb"), "-D", str(self.data_dir),
                    "-U", self.superuser, f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
                    "--encoding=UTF8", "--no-locale", "--no-instructions",
                ]),
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self) -> None:
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-p {self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
            "-c password_encryption=scram-sha-256",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off",
                        "-c full_page_writes=off"]
        result = subprocess.run(
            _as_server_user([
                str(_pg_bin() / "pg_ctl"), "-D", str(self.data_dir),
                "-l", str(self.log_file), "-o", " ".join(options), "-w", "-t", "60",
                "start",
            ]),
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr.strip()}\n{log}")

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([
                str(_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                "-w", "stop",
            ]),
            capture_output=True, check=False,
        )

    def remove(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def connect(self, database: str = "postgres") -> pg8000.native.Connection:
        return pg8000.native.Connection(
            user=self.superuser, password=self.superuser_password,
            host="127.0.0.1", port=self.port, database=database,
        )


def new_password() -> str:
    return secrets.token_urlsafe(24)
