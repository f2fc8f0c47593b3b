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

-- The stored payload must be the format-1 envelope {"at": text, "data": {...}, "v": 1}.
-- (Canonical form, duplicate keys and non-integer numbers are what the verifier
-- checks, since jsonb cannot see them.)
-- (PL/pgSQL, not SQL: its plan is cached; a SQL function here is re-planned on
-- every row and cost ~90 µs an insert.)
CREATE FUNCTION ledger_payload_is_envelope(payload text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    j jsonb := payload::jsonb;
BEGIN
    IF jsonb_typeof(j) <> 'object' THEN
        RETURN false;
    END IF;
    RETURN (j - 'at' - 'data' - 'v') = '{}'::jsonb
        AND jsonb_typeof(j -> 'at') = 'string'
        AND jsonb_typeof(j -> 'data') = 'object'
        AND j -> 'v' = '1'::jsonb;
END
$$;

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
    payload          text NOT NULL CHECK (ledger_payload_is_envelope(payload)),
    prev_hash        bytea NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash             bytea NOT NULL CHECK (octet_length(hash) = 32),
    -- Transport-level deduplication (an SQS redelivery, an HTTP retry); not hashed.
    idempotency_key  text CHECK (idempotency_key ~ '^[!-~]{1,200}$'),
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
REVOKE ALL ON FUNCTION ledger_open_chain() FROM PUBLIC;
CREATE TRIGGER tenants_open_chain AFTER INSERT ON tenants
    FOR EACH ROW EXECUTE FUNCTION ledger_open_chain();

-- The one definition of the entry hash in SQL (see the layout above).
CREATE FUNCTION ledger_entry_hash(prev_hash bytea, seq bigint, kind text, payload text)
    RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
BEGIN
    RETURN sha256(prev_hash || int8send(seq)
                  || int4send(octet_length(kind)) || convert_to(kind, 'UTF8')
                  || int4send(octet_length(payload)) || convert_to(payload, 'UTF8'));
END
$$;

-- An entry must extend its tenant's chain exactly: next seq, right link, right
-- hash. This guards every insert path, whoever runs it (owner included).
-- (Names are schema-qualified rather than pinned with SET search_path, which
-- would cost a configuration save/restore on every row.)
CREATE FUNCTION ledger_check_append() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
DECLARE
    expected_prev bytea;
BEGIN
    IF NEW.seq = 1 THEN
        expected_prev := '\x0000000000000000000000000000000000000000000000000000000000000000';
    ELSE
        SELECT e.hash INTO expected_prev FROM public.ledger_entries e
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
    IF NEW.hash <> public.ledger_entry_hash(NEW.prev_hash, NEW.seq, NEW.kind, NEW.payload) THEN
        RAISE EXCEPTION 'ledger: entry % has a wrong hash', NEW.seq USING ERRCODE = 'EL002';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_entries_check_append BEFORE INSERT ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_check_append();

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

-- The only way the application appends: lock the tenant's chain head, return
-- the entry already recorded under `p_key` if any (created = false), else
-- append the next entry and move the head onto it (created = true). The engine
-- picks seq and prev_hash, so the application cannot fork or skip; the tenant
-- is the transaction's. No row back: the transaction's tenant does not exist.
-- Only this function moves a head: an entry inserted any other way (by the
-- owner, triggers still checking it) lies beyond the head and verify reports it.
CREATE FUNCTION ledger_append(p_kind text, p_payload text, p_key text)
    RETURNS TABLE (seq bigint, kind text, payload text, prev_hash bytea, hash bytea,
                   created boolean)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
#variable_conflict use_column
DECLARE
    tenant uuid := app_current_tenant();
    head_seq bigint;
    head_hash bytea;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'ledger: no tenant set for this transaction' USING ERRCODE = 'EL003';
    END IF;
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM ledger_heads h
        WHERE h.tenant_id = tenant FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF p_key IS NOT NULL THEN
        SELECT e.seq, e.kind, e.payload, e.prev_hash, e.hash
            INTO seq, kind, payload, prev_hash, hash
            FROM ledger_entries e WHERE e.tenant_id = tenant AND e.idempotency_key = p_key;
        IF FOUND THEN
            created := false;
            RETURN NEXT;
            RETURN;
        END IF;
    END IF;
    seq := head_seq + 1;
    hash := ledger_entry_hash(head_hash, seq, p_kind, p_payload);
    INSERT INTO ledger_entries (tenant_id, seq, kind, payload, prev_hash, hash, idempotency_key)
        VALUES (tenant, seq, p_kind, p_payload, head_hash, hash, p_key);
    UPDATE ledger_heads h SET seq = ledger_append.seq, hash = ledger_append.hash
        WHERE h.tenant_id = tenant;
    kind := p_kind;
    payload := p_payload;
    prev_hash := head_hash;
    created := true;
    RETURN NEXT;
END
$$;

-- The application reads and appends through ledger_append(); it has no INSERT,
-- UPDATE, DELETE or TRUNCATE on the ledger tables at all.
REVOKE ALL ON FUNCTION ledger_append(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ledger_append(text, text, text) TO {{app_role}};
GRANT SELECT ON ledger_entries, ledger_heads TO {{app_role}};
