-- Every HTTP request: who (principal), for which tenant, what, the outcome,
-- how long, its request id and the caller's address truncated (IPv4 /24, IPv6
-- /48). Never updated by any role; deleted only by the table owner and only
-- once a year old (the retention purge: the truncated address is personal
-- data). A tenant reads its own rows; rows without a tenant (anonymous calls,
-- failed logins) are read by operators only.

CREATE TABLE access_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    tenant_id   uuid,
    principal   text CHECK (principal ~ '^(user|api_key):[0-9a-f-]{36}$'),
    method      text NOT NULL CHECK (method ~ '^[A-Z]{1,10}$'),
    route       text NOT NULL CHECK (char_length(route) BETWEEN 1 AND 200),
    status      integer NOT NULL CHECK (status BETWEEN 100 AND 599),
    latency_ms  integer NOT NULL CHECK (latency_ms >= 0),
    request_id  text NOT NULL CHECK (char_length(request_id) BETWEEN 1 AND 100),
    ip_prefix   text NOT NULL CHECK (char_length(ip_prefix) <= 50)
);
CREATE INDEX access_log_tenant_at ON access_log (tenant_id, at);

ALTER TABLE access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON access_log FOR SELECT
    USING (tenant_id = app_current_tenant());
CREATE POLICY tenant_writes ON access_log FOR INSERT
    WITH CHECK (tenant_id IS NOT DISTINCT FROM app_current_tenant());
-- Operators (the owner role) read everything and run the retention purge.
CREATE POLICY operators_read ON access_log FOR SELECT TO CURRENT_USER USING (true);
CREATE POLICY retention_purge ON access_log FOR DELETE TO CURRENT_USER USING (true);

CREATE FUNCTION access_log_stamp() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.at := now();  -- the engine's clock, not the caller's
    RETURN NEW;
END
$$;
CREATE TRIGGER access_log_stamp BEFORE INSERT ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_stamp();
-- Per statement: refused even when row security leaves no row to update.
CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();
CREATE FUNCTION access_log_check_purge() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.at >= now() - interval '1 year'
       OR current_user <> (SELECT pg_catalog.pg_get_userbyid(c.relowner)
                           FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID) THEN
        RAISE EXCEPTION 'access_log: only the retention purge deletes, rows older than a year'
            USING ERRCODE = 'EL001';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER access_log_check_purge BEFORE DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION access_log_check_purge();
CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

GRANT SELECT, INSERT ON access_log TO {{app_role}};
