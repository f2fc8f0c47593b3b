-- Per-tenant data keys for column encryption, stored only wrapped by a master
-- key that never enters the database (keys port: local file, KMS, Key Manager).

CREATE TABLE tenant_data_keys (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    version        integer NOT NULL CHECK (version >= 1),
    master_key_id  text NOT NULL CHECK (master_key_id ~ '^[A-Za-z0-9_.:/-]{1,200}$'),
    wrapped        bytea NOT NULL CHECK (octet_length(wrapped) BETWEEN 28 AND 4096),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, version)
);

ALTER TABLE tenant_data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_data_keys
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
-- Re-wrapping under a new master key spans every tenant: only the owner (the
-- role running this migration, whose password functions never get) may.
CREATE POLICY master_key_rotation ON tenant_data_keys TO CURRENT_USER
    USING (true) WITH CHECK (true);

-- A data key is never deleted here (what it sealed would be lost) and only its
-- wrapping may ever change, never which tenant or version it is.
CREATE FUNCTION tenant_data_keys_check_rewrap() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.tenant_id <> OLD.tenant_id OR NEW.version <> OLD.version THEN
        RAISE EXCEPTION 'tenant_data_keys: only the wrapping of a data key may change'
            USING ERRCODE = 'EL001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER tenant_data_keys_check_rewrap BEFORE UPDATE ON tenant_data_keys
    FOR EACH ROW EXECUTE FUNCTION tenant_data_keys_check_rewrap();
CREATE TRIGGER tenant_data_keys_refuse_delete BEFORE DELETE ON tenant_data_keys
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER tenant_data_keys_refuse_truncate BEFORE TRUNCATE ON tenant_data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- The application adds a data key only as the next version of its own tenant:
-- no gaps, no far-future version that would block the tenant's next one.
-- Returns false when that version exists already (a concurrent first use won).
CREATE FUNCTION data_key_add(p_version integer, p_master_key_id text, p_wrapped bytea)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    tenant uuid := app_current_tenant();
    latest integer;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'data keys: no tenant set for this transaction' USING ERRCODE = 'EL003';
    END IF;
    SELECT max(k.version) INTO latest FROM tenant_data_keys k WHERE k.tenant_id = tenant;
    IF p_version <= coalesce(latest, 0) THEN
        RETURN false;
    END IF;
    IF p_version <> coalesce(latest, 0) + 1 THEN
        RAISE EXCEPTION 'data keys: version % is not the next one (%)', p_version,
            coalesce(latest, 0) + 1 USING ERRCODE = 'EL002';
    END IF;
    INSERT INTO tenant_data_keys (tenant_id, version, master_key_id, wrapped)
        VALUES (tenant, p_version, p_master_key_id, p_wrapped)
        ON CONFLICT (tenant_id, version) DO NOTHING;
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION data_key_add(integer, text, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION data_key_add(integer, text, bytea) TO {{app_role}};
GRANT SELECT ON tenant_data_keys TO {{app_role}};
