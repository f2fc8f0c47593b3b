-- API keys for machine-to-machine callers (a frontend's server, integrations):
-- per tenant, with scopes, an expiry of at most a year, revocable. The secret
-- is 256 random bits shown once; only its SHA-256 is kept.

CREATE TABLE api_keys (
    id            uuid PRIMARY KEY,
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    secret_hash   bytea NOT NULL UNIQUE CHECK (octet_length(secret_hash) = 32),
    scopes        text[] NOT NULL
                  CHECK (cardinality(scopes) >= 1
                         AND scopes <@ ARRAY['ledger:read']::text[]),
    created_by    uuid NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    FOREIGN KEY (created_by, tenant_id) REFERENCES users (id, tenant_id)
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
-- A call's tenant is known only once its key is: auth_api_key() (as the
-- owner) is the one read across tenants, by exact secret hash.
CREATE POLICY key_lookup ON api_keys TO CURRENT_USER USING (true) WITH CHECK (true);

CREATE FUNCTION api_keys_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.created_at := now();
        NEW.last_used_at := NULL;
        IF NEW.revoked_at IS NOT NULL OR NEW.expires_at <= now()
           OR NEW.expires_at > now() + interval '366 days' THEN
            RAISE EXCEPTION 'api_keys: a key starts live and lasts at most a year'
                USING ERRCODE = 'EL002';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.id, NEW.tenant_id, NEW.name, NEW.secret_hash, NEW.scopes, NEW.created_by,
        NEW.created_at, NEW.expires_at)
       IS DISTINCT FROM (OLD.id, OLD.tenant_id, OLD.name, OLD.secret_hash, OLD.scopes,
                         OLD.created_by, OLD.created_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'api_keys: a key is never changed, only revoked' USING ERRCODE = 'EL001';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'api_keys: a revoked key stays revoked' USING ERRCODE = 'EL001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER api_keys_check BEFORE INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_check();

-- The live key for this secret hash: (id, tenant, scopes), its last use stamped.
CREATE FUNCTION auth_api_key(p_secret_hash bytea)
    RETURNS TABLE (key_id uuid, tenant_id uuid, scopes text[])
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        UPDATE api_keys k SET last_used_at = now()
        WHERE k.secret_hash = p_secret_hash AND k.revoked_at IS NULL AND k.expires_at > now()
        RETURNING k.id, k.tenant_id, k.scopes
    $$;
REVOKE ALL ON FUNCTION auth_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_api_key(bytea) TO {{app_role}};

GRANT SELECT, INSERT ON api_keys TO {{app_role}};
GRANT UPDATE (revoked_at) ON api_keys TO {{app_role}};
