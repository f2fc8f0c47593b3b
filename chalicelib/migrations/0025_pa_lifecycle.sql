-- The lifecycle of an issued invoice as the Plateforme Agréée reports it
-- (issue 16, "Lifecycle"; docs/pa.md#the-poller).
--
-- 1. pa_cursors: per tenant, where the poller's search of the PA resumes
--    (`updatedAfter`), and the flows already taken at exactly that instant
--    (the next search overlaps the cursor and drops those).
-- 2. pa_status_messages: every status flow the poller took, one row per flow
--    and referenced invoice (position 0 for a flow refused whole): the CDAR's
--    message id and SHA-256, what it said, the invoice it matched, and the
--    verdict at arrival (applied, late, duplicate, anomaly; refused: a CDAR the
--    hardened parser would not read; unmatched: no invoice of this tenant).
--    The primary key makes a flow seen twice a no-op.
-- 3. The service's kinds: `status.` joins the service's namespaces and
--    `status.changed` its kinds (0021's CHECK, redefined), so the generic
--    append-ledger queue (kinds.py) and the engine refuse `status.*` other
--    than the poller's. A `status.changed` entry must name an issued invoice
--    of its tenant, by id and number (a deferred constraint trigger, EL006):
--    a status can be forged for no invoice that does not exist.
--
-- `status.changed` is not fiscal money: closings do not sum it (kinds.py MONEY_KINDS).

CREATE TABLE pa_cursors (
    tenant_id       uuid PRIMARY KEY REFERENCES tenants (id),
    updated_after   timestamptz NOT NULL,
    seen_at_cursor  text[] NOT NULL DEFAULT '{}'
                    CHECK (cardinality(seen_at_cursor) <= 1000),
    polled_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pa_status_messages (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    flow_id         text NOT NULL CHECK (length(flow_id) BETWEEN 1 AND 255),
    position        integer NOT NULL CHECK (position BETWEEN 0 AND 100),
    flow_updated_at timestamptz NOT NULL,
    message_sha256  bytea CHECK (octet_length(message_sha256) = 32),
    message_id      text CHECK (message_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
    invoice_id      uuid,
    code            integer CHECK (code BETWEEN 100 AND 999),
    verdict         text NOT NULL CHECK (verdict IN ('applied', 'late', 'duplicate', 'anomaly',
                                                     'refused', 'unmatched')),
    rule            text NOT NULL CHECK (length(rule) <= 200),
    ledger_seq      bigint,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, flow_id, position),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);
CREATE INDEX pa_status_messages_invoice ON pa_status_messages (tenant_id, invoice_id);

ALTER TABLE pa_cursors ENABLE ROW LEVEL SECURITY;
ALTER TABLE pa_cursors FORCE ROW LEVEL SECURITY;
ALTER TABLE pa_status_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE pa_status_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pa_cursors
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY tenant_isolation ON pa_status_messages
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

-- Received messages are a record: never changed, never deleted.
CREATE TRIGGER pa_status_messages_no_update BEFORE UPDATE OR DELETE OR TRUNCATE
    ON pa_status_messages FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

GRANT SELECT, INSERT ON pa_cursors TO {{app_role}};
GRANT UPDATE (updated_after, seen_at_cursor, polled_at) ON pa_cursors TO {{app_role}};
GRANT SELECT, INSERT ON pa_status_messages TO {{app_role}};

-- The poller's only view across tenants: which tenants have issued an invoice
-- (ids only), through 0016's owner-only scan policies on the ledger.
CREATE FUNCTION pa_tenants_to_poll(p_limit integer) RETURNS TABLE (tenant_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM set_config('app.sealing_scan', 'on', true);
    RETURN QUERY
    SELECT h.tenant_id FROM public.ledger_heads h
     WHERE EXISTS (SELECT 1 FROM public.ledger_entries e
                    WHERE e.tenant_id = h.tenant_id AND e.kind = 'invoice.issued')
     ORDER BY h.tenant_id LIMIT least(greatest(p_limit, 0), 100000);
    PERFORM set_config('app.sealing_scan', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION pa_tenants_to_poll(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pa_tenants_to_poll(integer) TO {{app_role}};

CREATE FUNCTION ledger_check_status_entry() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    data jsonb := NEW.payload::jsonb -> 'data';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM invoices i
                    WHERE i.tenant_id = NEW.tenant_id
                      AND i.id::text = data ->> 'invoice_id'
                      AND i.invoice_number = data ->> 'invoice_number') THEN
        RAISE EXCEPTION 'ledger: entry % (status.changed) names no issued invoice', NEW.seq
            USING ERRCODE = 'EL006';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_status_backed AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.kind = 'status.changed')
    EXECUTE FUNCTION ledger_check_status_entry();

ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_service_kinds;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_service_kinds
    CHECK (kind !~ '^(invoice|credit_note|quote|closing|payment|status)\.'
           OR kind IN ('invoice.issued', 'credit_note.issued', 'invoice.archived',
                       'quote.created', 'quote.converted', 'closing.sealed',
                       'status.changed')) NOT VALID;
DO $$
BEGIN
    ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_service_kinds;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'ledger_entries_service_kinds left NOT VALID: an entry has an invented kind';
END
$$;
