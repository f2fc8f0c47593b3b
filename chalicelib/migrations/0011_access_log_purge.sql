-- The scheduled retention purge of the access log (a year, DESIGN.md GDPR
-- table). The functions hold only the application role, which may not delete
-- rows itself: this one function, running as the table owner, deletes exactly
-- what the owner's purge may (rows older than a year on the engine's clock)
-- and nothing else. The row trigger of 0010 still checks each row.

CREATE FUNCTION purge_access_log() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
    WITH gone AS (
        DELETE FROM public.access_log WHERE at < now() - interval '1 year' RETURNING 1)
    SELECT count(*) FROM gone
$$;
REVOKE ALL ON FUNCTION purge_access_log() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION purge_access_log() TO {{app_role}};
