"""Master key rotation, without downtime, as the owner role:

    python -m chalicelib.rotate_keys      # settings from EINVOICE_* (owner credentials)

1. a new master key becomes current in the key file (older ones stay);
2. every tenant's data key is re-wrapped under it, one row per transaction,
   so readers keep working throughout (old and new wrappings both unwrap);
Old master keys stay in the file: backups and containers that wrapped a key
before reloading the file still need them. Data is never re-encrypted: data
keys do not change, only their wrapping. Run it again to re-wrap what a stale
container wrapped under the previous key meanwhile; `in_use` says which master
keys still wrap something.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pg8000.native

from chalicelib.adapters.keys import LocalKeyFile
from chalicelib.config import Settings
from chalicelib.domain.encryption import DecryptionRefused
from chalicelib.migrate import owner_connector
from chalicelib.ports import KeyWrapper, WrappedKey
from chalicelib.usecases.field_encryption import wrap_context


def rewrap_data_keys(conn: pg8000.native.Connection,
                     keys: KeyWrapper) -> tuple[int, list[str]]:
    """Re-wrap every data key not yet under the current master key.

    Returns how many were re-wrapped and which could not be unwrapped (a
    tampered row, a master key missing from the file): those are left as they
    are and reported.
    """
    rows = conn.run("SELECT tenant_id, version, master_key_id, wrapped FROM tenant_data_keys "
                    "WHERE master_key_id <> :current ORDER BY tenant_id, version",
                    current=keys.current_key_id)
    done, failed = 0, []
    for tenant_id, version, master_key_id, wrapped in rows:
        context = wrap_context(UUID(str(tenant_id)), version)
        try:
            data_key = keys.unwrap(WrappedKey(master_key_id, bytes(wrapped)), context)
        except DecryptionRefused as exc:
            failed.append(f"tenant {tenant_id} key version {version}: {exc}")
            continue
        rewrapped = keys.wrap(data_key, context)
        conn.run("BEGIN")
        updated = conn.run(
            "UPDATE tenant_data_keys SET master_key_id = :m, wrapped = :w "
            "WHERE tenant_id = :t AND version = :v AND master_key_id = :old RETURNING 1",
            m=rewrapped.master_key_id, w=rewrapped.blob, t=str(tenant_id), v=version,
            old=master_key_id)
        conn.run("COMMIT")
        done += len(updated)
    return done, failed


@dataclass
class Rotation:
    new_master_key: str
    rewrapped: int
    failed: list[str]
    in_use: list[str]


def rotate(conn: pg8000.native.Connection, key_file: Path) -> Rotation:
    new_id = LocalKeyFile.add_key(key_file)
    count, failed = rewrap_data_keys(conn, LocalKeyFile(key_file))
    in_use = sorted(row[0] for row in conn.run(
        "SELECT DISTINCT master_key_id FROM tenant_data_keys"))
    return Rotation(new_id, count, failed, in_use)


def main() -> int:
    settings = Settings()
    if settings.master_key_file is None:
        print("EINVOICE_MASTER_KEY_FILE is not set", file=sys.stderr)
        return 2
    conn = owner_connector(settings)()  # the owner, with the functions' TLS settings
    try:
        result = rotate(conn, settings.master_key_file)
    finally:
        conn.close()
    print(f"master key {result.new_master_key} is current; {result.rewrapped} data keys "
          f"re-wrapped; master keys still wrapping data keys: {', '.join(result.in_use)}")
    for failure in result.failed:
        print(f"NOT re-wrapped: {failure}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
