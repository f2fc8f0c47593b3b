"""A superuser can edit rows (triggers off): verify must then name the first
broken entry and why. Real PostgreSQL, the verify use case as shipped."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pg8000.native
import pytest

from chalicelib.adapters.postgres import Database
from chalicelib.usecases.append_ledger import AppendRequest, append_ledger
from chalicelib.usecases.verify_ledger import verify_ledger
from tests.fakes import FrozenClock

Connect = Callable[[], pg8000.native.Connection]


@pytest.fixture
def chain10(database: Database, tenant: uuid.UUID) -> uuid.UUID:
    for i in range(1, 11):
        append_ledger(AppendRequest(tenant_id=tenant, kind="note.added",
                                    payload={"number": f"F-{i}", "total": "100.00"}),
                      database.unit_of_work, FrozenClock())
    return tenant


@pytest.fixture
def root(superuser: Connect) -> Iterator[pg8000.native.Connection]:
    conn = superuser()
    conn.run("SET session_replication_role = replica")  # what an attacker with rights does
    yield conn
    conn.close()


def test_untouched_chain_verifies(database: Database, chain10: uuid.UUID) -> None:
    result = verify_ledger(chain10, database.snapshot)
    assert result.ok and result.entries_checked == 10 and result.head.seq == 10


@pytest.mark.parametrize("tamper,seq,reason", [
    ("UPDATE ledger_entries SET payload = replace(payload, '100.00', '1.00') WHERE seq = 6",
     6, "hash_mismatch"),
    ("UPDATE ledger_entries SET hash = sha256(hash) WHERE seq = 4", 4, "hash_mismatch"),
    ("UPDATE ledger_entries SET kind = 'credit_note.issued' WHERE seq = 9", 9, "hash_mismatch"),
    ("UPDATE ledger_entries SET prev_hash = sha256(prev_hash) WHERE seq = 2",
     2, "prev_link_mismatch"),
    ("DELETE FROM ledger_entries WHERE seq = 5", 5, "seq_gap"),
    ("DELETE FROM ledger_entries WHERE seq = 1", 1, "seq_gap"),
    ("DELETE FROM ledger_entries WHERE seq > 7", 8, "truncated"),
])
def test_superuser_tampering_is_located(database: Database, chain10: uuid.UUID,
                                        root: pg8000.native.Connection, tamper: str, seq: int,
                                        reason: str) -> None:
    root.run(f"{tamper} AND tenant_id = :t", t=str(chain10))
    result = verify_ledger(chain10, database.snapshot)
    assert (result.ok, result.first_broken_seq, result.reason) == (False, seq, reason)


def test_rewritten_entry_with_valid_hash_breaks_the_next_link(
        database: Database, chain10: uuid.UUID, root: pg8000.native.Connection) -> None:
    # The attacker recomputes entry 3's hash after editing it: entry 4 no longer links.
    root.run("""UPDATE ledger_entries SET payload = replace(payload, 'F-3', 'F-X'),
                hash = sha256(prev_hash || int8send(seq) || int4send(octet_length(kind))
                    || convert_to(kind, 'UTF8')
                    || int4send(octet_length(replace(payload, 'F-3', 'F-X')))
                    || convert_to(replace(payload, 'F-3', 'F-X'), 'UTF8'))
                WHERE tenant_id = :t AND seq = 3""", t=str(chain10))
    result = verify_ledger(chain10, database.snapshot)
    assert (result.first_broken_seq, result.reason) == (4, "prev_link_mismatch")


def test_other_tenants_are_unaffected(database: Database, chain10: uuid.UUID, tenant: uuid.UUID,
                                      root: pg8000.native.Connection) -> None:
    from chalicelib.usecases.create_tenant import create_tenant
    other = create_tenant("Bystander", database.unit_of_work)
    append_ledger(AppendRequest(tenant_id=other, kind="a.b", payload={}),
                  database.unit_of_work, FrozenClock())
    root.run("DELETE FROM ledger_entries WHERE tenant_id = :t AND seq = 2", t=str(chain10))
    assert verify_ledger(other, database.snapshot).ok
    assert not verify_ledger(chain10, database.snapshot).ok


def test_head_rewound_behind_the_entries(database: Database, chain10: uuid.UUID,
                                         root: pg8000.native.Connection) -> None:
    root.run("UPDATE ledger_heads SET seq = 0, hash = decode(repeat('00', 32), 'hex') "
             "WHERE tenant_id = :t", t=str(chain10))
    result = verify_ledger(chain10, database.snapshot)
    assert (result.first_broken_seq, result.reason) == (1, "head_behind")


def test_head_hash_replaced(database: Database, chain10: uuid.UUID,
                            root: pg8000.native.Connection) -> None:
    root.run("UPDATE ledger_heads SET hash = sha256(hash) WHERE tenant_id = :t", t=str(chain10))
    result = verify_ledger(chain10, database.snapshot)
    assert (result.first_broken_seq, result.reason) == (10, "head_mismatch")


def test_pages_are_cut_by_payload_bytes(database: Database, chain10: uuid.UUID,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a tiny byte budget every page holds one row: the stream is still
    complete and in order (memory per page is bounded by bytes, not rows)."""
    from chalicelib.adapters.postgres import ledger as postgres

    monkeypatch.setattr(postgres, "PAGE_BYTES", 1)
    with database.snapshot(chain10) as uow:
        assert [e.seq for e in uow.ledger.entries()] == list(range(1, 11))
        assert [e.seq for e in uow.ledger.entries(after_seq=7)] == [8, 9, 10]
    assert verify_ledger(chain10, database.snapshot).ok
