-- The hash-chained ledger: append-only entries and one chain head per tenant.
--
-- hash = SHA-256( prev_hash                      32 bytes
--               || seq                          8 bytes, unsigned big-endian
--               || octet_length(kind)           4 bytes, big-endian
--               || kind                         UTF-8
--               || octet_length(payload)        4 bytes, big-endian
--               || payload )                    UTF-8 canonical JSON (RFC 8785)
-- The genesis prev_hash is 32 zero bytes. The engine recomputes and checks it
-- on every insert, and checks the link to the previous entry, so neither an
-- application bug nor a forged row can fork the chain or leave a gap.

CREATE TABLE ledger_heads (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    seq        bigint NOT NULL DEFAULT 0 CHECK (seq >= 0),
    hash       bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex')
               CHECK (octet_length(hash) = 32)
);

CREATE TABLE ledger_entries (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    seq              bigint NOT NULL CHECK (seq >= 1),
    kind             text NOT NULL
                     CHECK (kind ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'
                            AND octet_length(kind) <= 64),
    payload          text NOT NULL CHECK (jsonb_typeof(payload::jsonb) = 'object'),
    prev_hash        bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash             bytea NOT NULL CHECK (octet_length(hash) = 32),
    -- Transport-level deduplication (an SQS redelivery, an HTTP retry); not hashed.
    idempotency_key  text CHECK (octet_length(idempotency_key) BETWEEN 1 AND 200),
    PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX ledger_entries_idempotency
    ON ledger_entries (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Every tenant is born with an empty chain.
CREATE FUNCTION ledger_open_chain() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    INSERT INTO ledger_heads (tenant_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER tenants_open_chain AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION ledger_open_chain();

-- An entry must extend its tenant's chain exactly: next seq, right link, right hash.
CREATE FUNCTION ledger_check_append() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    expected_prev bytea;
BEGIN
    IF NEW.seq = 1 THEN
        expected_prev := decode(repeat('00', 32), 'hex');
    ELSE
        SELECT e.hash INTO expected_prev FROM ledger_entries e
            WHERE e.tenant_id = NEW.tenant_id AND e.seq = NEW.seq - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger: entry % would leave a gap (entry % is missing)',
                NEW.seq, NEW.seq - 1 USING ERRCODE = 'EL002';
        END IF;
    END IF;
    IF NEW.prev_hash <> expected_prev THEN
        RAISE EXCEPTION 'ledger: entry % does not link to entry %', NEW.seq, NEW.seq - 1
            USING ERRCODE = 'EL002';
    END IF;
    IF NEW.hash <> sha256(NEW.prev_hash || int8send(NEW.seq)
                          || int4send(octet_length(NEW.kind)) || convert_to(NEW.kind, 'UTF8')
                          || int4send(octet_length(NEW.payload)) || convert_to(NEW.payload, 'UTF8'))
    THEN
        RAISE EXCEPTION 'ledger: entry % has a wrong hash', NEW.seq USING ERRCODE = 'EL002';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_entries_check_append BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_check_append();

-- The head follows the chain, in the same transaction as the insert.
CREATE FUNCTION ledger_advance_head() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    UPDATE ledger_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: tenant has no chain head' USING ERRCODE = 'EL002';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ledger_entries_advance_head AFTER INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_advance_head();

-- A head may only move one step forward, onto the entry just appended:
-- it can be neither rolled back (to hide a truncation) nor pointed elsewhere.
CREATE FUNCTION ledger_check_head_move() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.tenant_id <> OLD.tenant_id OR NEW.seq <> OLD.seq + 1 OR NOT EXISTS (
        SELECT 1 FROM ledger_entries e
        WHERE e.tenant_id = NEW.tenant_id AND e.seq = NEW.seq AND e.hash = NEW.hash)
    THEN
        RAISE EXCEPTION 'ledger: a chain head only moves onto the entry just appended'
            USING ERRCODE = 'EL001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_heads_check_move BEFORE UPDATE ON ledger_heads
    FOR EACH ROW EXECUTE FUNCTION ledger_check_head_move();

CREATE TRIGGER ledger_entries_refuse_change BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER ledger_entries_refuse_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER ledger_heads_refuse_delete BEFORE DELETE ON ledger_heads
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER ledger_heads_refuse_truncate BEFORE TRUNCATE ON ledger_heads
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

ALTER TABLE ledger_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_heads
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

ALTER TABLE ledger_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_entries
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

-- The application appends and reads; it never updates, deletes or truncates
-- entries. UPDATE on the head's two columns is what SELECT ... FOR UPDATE needs
-- and what the advance trigger does; the move check above bounds it.
GRANT SELECT, INSERT ON ledger_entries TO {{app_role}};
GRANT SELECT ON ledger_heads TO {{app_role}};
GRANT UPDATE (seq, hash) ON ledger_heads TO {{app_role}};
