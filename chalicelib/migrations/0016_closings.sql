-- Sealed periods: a Merkle tree over each tenant's ledger (RFC 6962), signed
-- closings, and the public keys that verify them.
--
-- Merkle tree (RFC 6962): leaf i (0-based) is SHA-256(0x00 || hash of entry
-- seq i+1); a node is SHA-256(0x01 || left || right). Only nodes of *perfect*
-- subtrees are stored: node (level L, index i) covers leaves [i*2^L, (i+1)*2^L).
-- Any root, inclusion proof or consistency proof of any size is combined from
-- O(log n) of them (chalicelib/domain/merkle.py), so no proof loads the chain.
-- The engine computes the nodes itself from the stored entry hashes
-- (merkle_extend): the application can read them, never write one.
--
-- A closing is written once and never changed nor deleted, the owner included.
-- On insert the engine checks what it can check without the signature: the
-- period's shape, that no later period of the same kind is already sealed,
-- that the closing's ledger entry (closing.sealed) carries exactly this closing,
-- signature and key, and that the Merkle root, size and last entry hash inside
-- the signed text are the chain's own.

CREATE TABLE merkle_nodes (
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    level      smallint NOT NULL CHECK (level BETWEEN 0 AND 62),
    index      bigint NOT NULL CHECK (index >= 0),
    hash       bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (tenant_id, level, index)
);
ALTER TABLE merkle_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE merkle_nodes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON merkle_nodes
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE TRIGGER merkle_nodes_refuse_change BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER merkle_nodes_refuse_truncate BEFORE TRUNCATE ON merkle_nodes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- Grow the transaction's tenant's tree to cover entries 1..p_size: level 0 from
-- the entries' hashes, then each level from the one below, set-based, touching
-- only the new nodes. Returns the number of leaves now stored.
CREATE FUNCTION merkle_extend(p_size bigint) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    tenant uuid := app_current_tenant();
    stored bigint;
    lvl integer := 1;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'merkle_extend: no tenant' USING ERRCODE = '42501';
    END IF;
    IF p_size IS NULL OR p_size < 0
       OR p_size > (SELECT h.seq FROM ledger_heads h WHERE h.tenant_id = tenant) THEN
        RAISE EXCEPTION 'merkle_extend: size % is beyond the chain', p_size
            USING ERRCODE = '22023';
    END IF;
    SELECT coalesce(max(n.index) + 1, 0) INTO stored FROM merkle_nodes n
        WHERE n.tenant_id = tenant AND n.level = 0;
    IF p_size <= stored THEN
        RETURN stored;
    END IF;
    INSERT INTO merkle_nodes (tenant_id, level, index, hash)
        SELECT tenant, 0, e.seq - 1, sha256('\x00'::bytea || e.hash)
          FROM ledger_entries e
         WHERE e.tenant_id = tenant AND e.seq > stored AND e.seq <= p_size;
    IF (SELECT count(*) FROM merkle_nodes n WHERE n.tenant_id = tenant AND n.level = 0
          AND n.index >= stored AND n.index < p_size) <> p_size - stored THEN
        RAISE EXCEPTION 'merkle_extend: the chain has a gap below %', p_size
            USING ERRCODE = 'EL002';
    END IF;
    WHILE (p_size >> lvl) > 0 LOOP
        -- New parents at this level start at index (stored >> lvl): one range
        -- scan of the level below on the primary key, paired by lead(), so the
        -- work is the new nodes', whatever the tree's size (no self-join).
        INSERT INTO merkle_nodes (tenant_id, level, index, hash)
            SELECT tenant, lvl, x.idx / 2, sha256('\x01'::bytea || x.h || x.next_h)
              FROM (SELECT n.index AS idx, n.hash AS h,
                           lead(n.index) OVER (ORDER BY n.index) AS next_idx,
                           lead(n.hash) OVER (ORDER BY n.index) AS next_h
                      FROM merkle_nodes n
                     WHERE n.tenant_id = tenant AND n.level = lvl - 1
                       AND n.index >= (stored >> lvl) * 2
                       AND n.index < (p_size >> (lvl - 1))) x
             WHERE x.idx % 2 = 0 AND x.next_idx = x.idx + 1
            ON CONFLICT DO NOTHING;
        lvl := lvl + 1;
    END LOOP;
    RETURN p_size;
END
$$;
REVOKE ALL ON FUNCTION merkle_extend(bigint) FROM PUBLIC;

-- The root of the first p_size leaves, from the stored perfect subtrees
-- (RFC 6962: fold the decomposition of p_size into powers of two from the right).
CREATE FUNCTION merkle_root(p_tenant uuid, p_size bigint) RETURNS bytea
    LANGUAGE plpgsql STABLE SET search_path = public, pg_temp
    AS $$
DECLARE
    acc bytea := NULL;
    node bytea;
    lvl integer;
    start bigint := p_size;
BEGIN
    IF p_size = 0 THEN
        RETURN sha256(''::bytea);
    END IF;
    -- From the right end: each set bit of p_size is one perfect subtree.
    FOR lvl IN 0..62 LOOP
        IF (p_size >> lvl) & 1 = 1 THEN
            start := start - (1::bigint << lvl);
            SELECT n.hash INTO node FROM merkle_nodes n
             WHERE n.tenant_id = p_tenant AND n.level = lvl AND n.index = start >> lvl;
            IF NOT FOUND THEN
                RETURN NULL;
            END IF;
            acc := CASE WHEN acc IS NULL THEN node
                        ELSE sha256('\x01'::bytea || node || acc) END;
        END IF;
    END LOOP;
    RETURN acc;
END
$$;
REVOKE ALL ON FUNCTION merkle_root(uuid, bigint) FROM PUBLIC;

-- Public keys that verify closings. Not tenant data: one signing key serves the
-- service; a rotated key stays here so old closings still verify.
CREATE TABLE signing_keys (
    key_id        text PRIMARY KEY,
    algorithm     text NOT NULL CHECK (algorithm = 'Ed25519'),
    public_key    bytea NOT NULL UNIQUE CHECK (octet_length(public_key) = 32),
    first_used_at timestamptz NOT NULL DEFAULT now(),
    -- The id is derived from the key, so an id can never name two keys.
    CHECK (key_id = 'ed25519:' || left(encode(sha256(public_key), 'hex'), 32))
);
CREATE TRIGGER signing_keys_refuse_change BEFORE UPDATE OR DELETE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER signing_keys_refuse_truncate BEFORE TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

CREATE TABLE closings (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    period_kind     text NOT NULL CHECK (period_kind IN ('day', 'month', 'year')),
    period_start    date NOT NULL,
    first_seq       bigint NOT NULL CHECK (first_seq >= 1),
    last_seq        bigint NOT NULL CHECK (last_seq >= first_seq - 1),
    closing         text NOT NULL,        -- the signed text: RFC 8785 JSON
    closing_sha256  bytea NOT NULL CHECK (octet_length(closing_sha256) = 32),
    signature       bytea NOT NULL CHECK (octet_length(signature) = 64),
    key_id          text NOT NULL REFERENCES signing_keys (key_id),
    entry_seq       bigint NOT NULL,      -- its closing.sealed ledger entry
    sealed_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, period_kind, period_start),
    UNIQUE (tenant_id, entry_seq),
    FOREIGN KEY (tenant_id, entry_seq) REFERENCES ledger_entries (tenant_id, seq),
    CHECK (entry_seq > last_seq),
    CHECK (period_kind = 'day'
           OR (period_kind = 'month' AND extract(day FROM period_start) = 1)
           OR (period_kind = 'year' AND extract(doy FROM period_start) = 1))
);
CREATE INDEX closings_by_last_seq ON closings (tenant_id, last_seq);
ALTER TABLE closings ENABLE ROW LEVEL SECURITY;
ALTER TABLE closings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON closings
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION closing_check_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    body jsonb;
    entry record;
    root bytea;
    last_hash bytea;
BEGIN
    IF EXISTS (SELECT 1 FROM closings c WHERE c.tenant_id = NEW.tenant_id
               AND c.period_kind = NEW.period_kind AND c.period_start > NEW.period_start) THEN
        RAISE EXCEPTION 'closings: a later % is already sealed', NEW.period_kind
            USING ERRCODE = 'EC001';
    END IF;
    IF NEW.closing_sha256 <> sha256(convert_to(NEW.closing, 'UTF8')) THEN
        RAISE EXCEPTION 'closings: closing_sha256 is not the closing''s' USING ERRCODE = 'EC002';
    END IF;
    SELECT e.kind, e.payload::jsonb -> 'data' AS data INTO entry FROM ledger_entries e
     WHERE e.tenant_id = NEW.tenant_id AND e.seq = NEW.entry_seq;
    IF NOT FOUND OR entry.kind <> 'closing.sealed'
       OR entry.data ->> 'closing' IS DISTINCT FROM NEW.closing
       OR entry.data ->> 'signature' IS DISTINCT FROM encode(NEW.signature, 'hex')
       OR entry.data ->> 'key_id' IS DISTINCT FROM NEW.key_id THEN
        RAISE EXCEPTION 'closings: entry % is not this closing''s closing.sealed entry',
            NEW.entry_seq USING ERRCODE = 'EC002';
    END IF;
    body := NEW.closing::jsonb;
    IF body ->> 'tenant_id' IS DISTINCT FROM NEW.tenant_id::text
       OR body -> 'period' ->> 'kind' IS DISTINCT FROM NEW.period_kind
       OR body -> 'period' ->> 'start' IS DISTINCT FROM NEW.period_start::text
       OR (body ->> 'first_seq')::bigint IS DISTINCT FROM NEW.first_seq
       OR (body ->> 'last_seq')::bigint IS DISTINCT FROM NEW.last_seq
       OR (body ->> 'count')::bigint IS DISTINCT FROM NEW.last_seq - NEW.first_seq + 1
       OR (body -> 'merkle' ->> 'size')::bigint IS DISTINCT FROM NEW.last_seq
       OR body ->> 'key_id' IS DISTINCT FROM NEW.key_id THEN
        RAISE EXCEPTION 'closings: the signed text does not describe this row'
            USING ERRCODE = 'EC002';
    END IF;
    PERFORM merkle_extend(NEW.last_seq);
    root := merkle_root(NEW.tenant_id, NEW.last_seq);
    IF body -> 'merkle' ->> 'root' IS DISTINCT FROM encode(root, 'hex') THEN
        RAISE EXCEPTION 'closings: the Merkle root is not the chain''s' USING ERRCODE = 'EC002';
    END IF;
    IF NEW.last_seq = 0 THEN
        last_hash := decode(repeat('00', 32), 'hex');
    ELSE
        SELECT e.hash INTO last_hash FROM ledger_entries e
         WHERE e.tenant_id = NEW.tenant_id AND e.seq = NEW.last_seq;
    END IF;
    IF body ->> 'last_entry_hash' IS DISTINCT FROM encode(last_hash, 'hex') THEN
        RAISE EXCEPTION 'closings: last_entry_hash is not entry %''s', NEW.last_seq
            USING ERRCODE = 'EC002';
    END IF;
    NEW.sealed_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER closing_check_insert BEFORE INSERT ON closings
    FOR EACH ROW EXECUTE FUNCTION closing_check_insert();
CREATE TRIGGER closings_refuse_change BEFORE UPDATE OR DELETE ON closings
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER closings_refuse_truncate BEFORE TRUNCATE ON closings
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- The scheduled sealer's only view across tenants: which tenants have activity
-- (an entry other than closing.sealed) beyond their last year closing (ids only).
-- The function runs as the table owner, which RLS FORCE also binds; these
-- read-only policies open the three tables to the owner only while the
-- function runs, so the owner's everyday view stays one tenant.
CREATE POLICY closing_schedule ON ledger_heads FOR SELECT TO CURRENT_USER
    USING (current_setting('app.sealing_scan', true) = 'on');
CREATE POLICY closing_schedule ON ledger_entries FOR SELECT TO CURRENT_USER
    USING (current_setting('app.sealing_scan', true) = 'on');
CREATE POLICY closing_schedule ON closings FOR SELECT TO CURRENT_USER
    USING (current_setting('app.sealing_scan', true) = 'on');
CREATE FUNCTION tenants_to_seal(p_limit integer) RETURNS TABLE (tenant_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    -- (Only the owner's policies read this setting: left on for the rest of the
    -- transaction, it would give the application role nothing; it is reset anyway.)
    PERFORM set_config('app.sealing_scan', 'on', true);
    RETURN QUERY
    SELECT h.tenant_id FROM public.ledger_heads h
     WHERE EXISTS (
        SELECT 1 FROM public.ledger_entries e
         WHERE e.tenant_id = h.tenant_id AND e.kind <> 'closing.sealed'
           AND e.seq > coalesce((SELECT max(c.last_seq) FROM public.closings c
                                 WHERE c.tenant_id = h.tenant_id
                                   AND c.period_kind = 'year'), 0))
     ORDER BY h.tenant_id LIMIT least(greatest(p_limit, 0), 100000);
    PERFORM set_config('app.sealing_scan', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION tenants_to_seal(integer) FROM PUBLIC;

-- Witnesses: each closing and signed chain heads are also written to the Object
-- Lock bucket (where no one can delete them), so a chain later cut short is
-- caught. This table only remembers what was written (what the schedule still
-- owes); verification reads the bucket, not this table.
CREATE TABLE chain_witnesses (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    seq          bigint NOT NULL CHECK (seq >= 0),
    kind         text NOT NULL CHECK (kind IN ('closing', 'head')),
    object_key   text NOT NULL,
    version_id   text NOT NULL,
    sha256       bytea NOT NULL CHECK (octet_length(sha256) = 32),
    witnessed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, kind, seq)
);
ALTER TABLE chain_witnesses ENABLE ROW LEVEL SECURITY;
ALTER TABLE chain_witnesses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON chain_witnesses
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE TRIGGER chain_witnesses_refuse_change BEFORE UPDATE OR DELETE ON chain_witnesses
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER chain_witnesses_refuse_truncate BEFORE TRUNCATE ON chain_witnesses
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (cardinality(scopes) >= 1
           AND scopes <@ ARRAY['ledger:read', 'invoices:read', 'invoices:write',
                               'closings:write']::text[]);

GRANT SELECT ON merkle_nodes, closings, signing_keys TO {{app_role}};
GRANT INSERT ON closings, signing_keys TO {{app_role}};
GRANT SELECT, INSERT ON chain_witnesses TO {{app_role}};
GRANT EXECUTE ON FUNCTION merkle_extend(bigint) TO {{app_role}};
GRANT EXECUTE ON FUNCTION merkle_root(uuid, bigint) TO {{app_role}};
GRANT EXECUTE ON FUNCTION tenants_to_seal(integer) TO {{app_role}};
