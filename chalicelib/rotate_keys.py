"""Master key rotation, without downtime, as the owner role:

    python -m chalicelib.rotate_keys      # settings from EINVOICE_* (owner credentials)

With the local key file (EINVOICE_KEY_PROVIDER=local):
1. a new master key becomes current in the key file (older ones stay);
2. every tenant's data key is re-wrapped under it, one row per transaction,
   so readers keep working throughout (old and new wrappings both unwrap);
Old master keys stay in the file: backups and containers that wrapped a key
before reloading the file still need them. Data is never re-encrypted: data
keys do not change, only their wrapping. Run it again to re-wrap what a stale
container wrapped under the previous key meanwhile; `in_use` says which master
keys still wrap something.

With a provider (aws-kms, scaleway-key-manager) the provider rotates its own
key material (KMS automatic or on-demand rotation, a Key Manager rotation
policy or `rotate`), keeping the key's id and decrypting what older material
wrapped: nothing to re-wrap for that. This command then only re-wraps, under
the provider's key, the data keys still wrapped by something else: the local
key file (EINVOICE_MASTER_KEY_FILE kept set for the move), which is how a
deployment moves off the file. Once `in_use` names only the provider's key,
the file may be archived.
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
    """The local key file: a new master key, then everything re-wrapped under it."""
    LocalKeyFile.add_key(key_file)
    return rewrap(conn, LocalKeyFile(key_file))


def rewrap(conn: pg8000.native.Connection, keys: KeyWrapper) -> Rotation:
    """Everything not under `keys`' current master key re-wrapped under it (a
    provider's key: rows the local key file wrapped, the move off the file)."""
    count, failed = rewrap_data_keys(conn, keys)
    in_use = sorted(row[0] for row in conn.run(
        "SELECT DISTINCT master_key_id FROM tenant_data_keys"))
    return Rotation(keys.current_key_id, count, failed, in_use)


def main() -> int:
    from chalicelib.domain.errors import ServiceUnavailable

    settings = Settings.from_environment()
    if settings.key_provider == "local" and settings.master_key_file is None:
        print("EINVOICE_MASTER_KEY_FILE is not set", file=sys.stderr)
        return 2
    conn = owner_connector(settings)()  # the owner, with the functions' TLS settings
    try:
        if settings.key_provider == "local" and settings.master_key_file is not None:
            result = rotate(conn, settings.master_key_file)
        else:
            from chalicelib.runtime import key_wrapper_for

            result = rewrap(conn, key_wrapper_for(settings))
    except ServiceUnavailable as exc:  # what was re-wrapped is committed; run it again
        print(f"stopped: {exc}; rows re-wrapped so far are kept, run it again",
              file=sys.stderr)
        return 3
    finally:
        conn.close()
    print(f"master key {result.new_master_key} is current; {result.rewrapped} data keys "
          f"re-wrapped; master keys still wrapping data keys: {', '.join(result.in_use)}")
    for failure in result.failed:
        print(f"NOT re-wrapped: {failure}", file=sys.stderr)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
