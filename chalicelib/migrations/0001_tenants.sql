-- Tenants and the tenancy primitive every policy uses.
-- {{app_role}} is replaced by the runner with the quoted application role.

-- Entry hashes count payload bytes as UTF-8 (octet_length); on any other server
-- encoding they would silently differ from the code's, so refuse to install.
DO $$
BEGIN
    IF current_setting('server_encoding') <> 'UTF8' THEN
        RAISE EXCEPTION 'the database must use UTF8 (found %)', current_setting('server_encoding');
    END IF;
END
$$;

-- The tenant of the current transaction, set by the unit of work with
-- set_config('app.tenant_id', ..., true). Unset (NULL) or reset ('') means
-- "no tenant": every policy then matches nothing. A value that is not a UUID
-- raises, so a malformed setting fails closed.
CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- Raised by every append-only table on UPDATE, DELETE or TRUNCATE.
CREATE FUNCTION refuse_mutation() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'EL001';
END
$$;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(btrim(name)) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant())
    WITH CHECK (id = app_current_tenant());

GRANT USAGE ON SCHEMA public TO {{app_role}};
GRANT SELECT, INSERT ON tenants TO {{app_role}};
