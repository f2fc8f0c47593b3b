"""One tenant's closings and Merkle tree in PostgreSQL (0016_closings.sql).

The engine computes the Merkle nodes (merkle_extend) and checks every closing
against its ledger entry and the chain on insert; this adapter only asks.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pg8000.native
from pg8000.exceptions import DatabaseError

from chalicelib.adapters.postgres.sql import Transactions, sqlstate
from chalicelib.domain.closing import MONEY_PATTERN, KindSum, RateSum
from chalicelib.domain.errors import Conflict, Violation
from chalicelib.domain.kinds import CLOSING_SEALED, MONEY_KINDS
from chalicelib.domain.ledger import utc_timestamp
from chalicelib.ports import StoredClosing

_COLUMNS = ("id, period_kind, period_start, first_seq, last_seq, closing, signature, key_id, "
            "entry_seq, sealed_at")


def _closing(row: list[Any]) -> StoredClosing:
    return StoredClosing(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7],
                         row[8], row[9])


class PostgresClosings:
    def __init__(self, conn: pg8000.native.Connection, tenant_id: UUID) -> None:
        self._conn = conn
        self._tenant = str(tenant_id)

    def lock(self) -> None:
        # One tenant's sealers queue here; other tenants seal in parallel.
        self._conn.run("SELECT pg_advisory_xact_lock(hashtextextended('closings:' || :t, 0))",
                       t=self._tenant)

    def _one(self, where: str, **params: Any) -> StoredClosing | None:
        rows = self._conn.run(f"SELECT {_COLUMNS} FROM closings WHERE tenant_id = :t AND {where}",
                              t=self._tenant, **params)
        return _closing(rows[0]) if rows else None

    def get(self, period_kind: str, period_start: date) -> StoredClosing | None:
        return self._one("period_kind = :k AND period_start = :s", k=period_kind, s=period_start)

    def by_id(self, closing_id: UUID) -> StoredClosing | None:
        return self._one("id = :id", id=str(closing_id))

    def latest(self, period_kind: str | None = None) -> StoredClosing | None:
        if period_kind is None:
            return self._one("true ORDER BY entry_seq DESC LIMIT 1")
        return self._one("period_kind = :k ORDER BY period_start DESC LIMIT 1", k=period_kind)

    def at_or_before(self, seq: int) -> StoredClosing | None:
        return self._one("last_seq <= :s ORDER BY last_seq DESC, entry_seq DESC LIMIT 1", s=seq)

    def covering(self, seq: int) -> StoredClosing | None:
        return self._one("last_seq >= :s ORDER BY last_seq, entry_seq LIMIT 1", s=seq)

    def recent(self, limit: int) -> list[StoredClosing]:
        rows = self._conn.run(f"SELECT {_COLUMNS} FROM closings WHERE tenant_id = :t "
                              "ORDER BY entry_seq DESC LIMIT :n", t=self._tenant, n=limit)
        return [_closing(row) for row in rows]

    def last_seq_before(self, after_seq: int, moment: datetime) -> int:
        # "at" is "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, fixed width): text order is time order.
        [[last]] = self._conn.run(
            "SELECT max(seq) FROM ledger_entries WHERE tenant_id = :t AND seq > :a "
            "AND (payload::jsonb ->> 'at') < :m", t=self._tenant, a=after_seq,
            m=utc_timestamp(moment))
        return int(last) if last is not None else after_seq

    def first_activity(self, after_seq: int) -> datetime | None:
        rows = self._conn.run(
            "SELECT seq, payload::jsonb ->> 'at' FROM ledger_entries WHERE tenant_id = :t "
            "AND seq > :a AND kind <> :sealed ORDER BY seq LIMIT 1",
            t=self._tenant, a=after_seq, sealed=CLOSING_SEALED)
        if not rows:
            return None
        seq, recorded = rows[0]
        try:
            return datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
        except (TypeError, ValueError):  # planted past the engine's check (0020)
            raise Conflict([Violation("ledger", f"entry {seq} has no valid recording time "
                                      "(at): no period holding it can be sealed")]) from None

    def first_malformed(self, after_seq: int) -> int | None:
        # The engine's own envelope check (0020), which every new row passed.
        [[seq]] = self._conn.run(
            "SELECT min(seq) FROM ledger_entries WHERE tenant_id = :t AND seq > :a "
            "AND NOT ledger_payload_envelope_ok(payload)", t=self._tenant, a=after_seq)
        return int(seq) if seq is not None else None

    def kind_counts(self, first_seq: int, last_seq: int) -> dict[str, int]:
        rows = self._conn.run("SELECT kind, count(*) FROM ledger_entries WHERE tenant_id = :t "
                              "AND seq BETWEEN :a AND :b GROUP BY kind", t=self._tenant,
                              a=first_seq, b=last_seq)
        return {kind: int(n) for kind, n in rows}

    def money(self, first_seq: int, last_seq: int) -> tuple[list[KindSum], list[RateSum]]:
        # Sums of the entries' own decimal strings (numeric is exact, as Decimal is).
        # Only JSON strings written as plain decimals count (MONEY_RULE): an entry
        # appended with other data is counted, never a reason sealing fails.
        def amount(obj: str, field: str) -> str:
            return (f"coalesce(sum(CASE WHEN jsonb_typeof({obj} -> '{field}') = 'string' "
                    f"AND {obj} ->> '{field}' ~ '{MONEY_PATTERN}' "
                    f"THEN ({obj} ->> '{field}')::numeric END), 0)::text")

        kinds = self._conn.run(
            f"SELECT kind, count(*), {amount('d', 'tax_exclusive_amount')}, "
            f"{amount('d', 'tax_total')}, {amount('d', 'tax_inclusive_amount')} "
            "FROM (SELECT kind, payload::jsonb -> 'data' -> 'totals' AS d FROM ledger_entries "
            "      WHERE tenant_id = :t AND seq BETWEEN :a AND :b AND kind = ANY(:k)) x "
            "GROUP BY kind", t=self._tenant, a=first_seq, b=last_seq, k=list(MONEY_KINDS))
        rates = self._conn.run(
            f"SELECT kind, g ->> 'category', g ->> 'rate', {amount('g', 'taxable_amount')}, "
            f"{amount('g', 'tax_amount')} "
            "FROM (SELECT kind, payload::jsonb -> 'data' -> 'totals' -> 'vat_breakdown' AS v "
            "      FROM ledger_entries WHERE tenant_id = :t AND seq BETWEEN :a AND :b "
            "      AND kind = ANY(:k)) x, "
            "     jsonb_array_elements(CASE WHEN jsonb_typeof(v) = 'array' THEN v "
            "                          ELSE '[]'::jsonb END) g "
            "WHERE jsonb_typeof(g) = 'object' AND jsonb_typeof(g -> 'category') = 'string' "
            "  AND jsonb_typeof(g -> 'rate') = 'string' "
            "GROUP BY 1, 2, 3", t=self._tenant, a=first_seq, b=last_seq, k=list(MONEY_KINDS))
        return ([KindSum(k, int(n), Decimal(x), Decimal(v), Decimal(i))
                 for k, n, x, v, i in kinds],
                [RateSum(k, c, r, Decimal(x), Decimal(v)) for k, c, r, x, v in rates])

    def merkle_root(self, size: int) -> bytes:
        self._conn.run("SELECT merkle_extend(:n)", n=size)
        [[root]] = self._conn.run("SELECT merkle_root(:t, :n)", t=self._tenant, n=size)
        if root is None:
            raise RuntimeError(f"the Merkle tree has no root for size {size}")
        return bytes(root)

    def merkle_nodes(self, coords: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        if not coords:
            return {}
        rows = self._conn.run(
            "SELECT n.level, n.index, n.hash FROM merkle_nodes n "
            "JOIN unnest(CAST(:l AS int[]), CAST(:i AS bigint[])) AS c(level, index) "
            "  ON n.level = c.level AND n.index = c.index WHERE n.tenant_id = :t",
            t=self._tenant, l=[c[0] for c in coords], i=[c[1] for c in coords])
        return {(int(level), int(index)): bytes(h) for level, index, h in rows}

    def last_witnessed(self, kind: str) -> int | None:
        [[seq]] = self._conn.run("SELECT max(seq) FROM chain_witnesses WHERE tenant_id = :t "
                                 "AND kind = :k", t=self._tenant, k=kind)
        return int(seq) if seq is not None else None

    def witnessed(self, kind: str, seq: int) -> bool:
        return bool(self._conn.run("SELECT 1 FROM chain_witnesses WHERE tenant_id = :t "
                                   "AND kind = :k AND seq = :s", t=self._tenant, k=kind, s=seq))

    def record_witness(self, kind: str, seq: int, key: str, version_id: str,
                       sha256: bytes) -> None:
        self._conn.run("INSERT INTO chain_witnesses (tenant_id, seq, kind, object_key, "
                       "version_id, sha256) VALUES (:t, :s, :k, :o, :v, :h) "
                       "ON CONFLICT DO NOTHING", t=self._tenant, s=seq, k=kind, o=key,
                       v=version_id, h=sha256)

    def add(self, closing: StoredClosing) -> None:
        try:
            self._conn.run(
                "INSERT INTO closings (tenant_id, id, period_kind, period_start, first_seq, "
                "last_seq, closing, closing_sha256, signature, key_id, entry_seq) VALUES "
                "(:t, :id, :k, :s, :a, :b, :c, sha256(convert_to(:c, 'UTF8')), :sig, :key, :e)",
                t=self._tenant, id=str(closing.closing_id), k=closing.period_kind,
                s=closing.period_start, a=closing.first_seq, b=closing.last_seq,
                c=closing.text, sig=closing.signature, key=closing.key_id,
                e=closing.entry_seq)
        except DatabaseError as exc:
            if sqlstate(exc) == "EC001":
                raise Conflict([Violation("period", f"a later {closing.period_kind} is "
                                          "already sealed")]) from None
            raise


def tenants_to_seal(database: Transactions, limit: int = 10000) -> list[UUID]:
    """Tenants with activity not yet under a year closing (ids only, engine function)."""
    with database.transaction(None, read_only=True) as conn:
        rows = conn.run("SELECT tenant_id FROM tenants_to_seal(:n)", n=limit)
    return [UUID(str(t)) for (t,) in rows]
