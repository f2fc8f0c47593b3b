-- What issuing invoices over the API needs beyond 0013 (which has landed and
-- is never edited).

-- Machines (accounting software, bulk issuing) may read and issue invoices
-- with an API key that carries these scopes.
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (cardinality(scopes) >= 1
           AND scopes <@ ARRAY['ledger:read', 'invoices:read', 'invoices:write']::text[]);

-- The scheduled archive sweep: issued invoices whose archiving a crash
-- interrupted and nobody retried, across tenants. The app role gets their
-- ids only, and only once they have waited at least 5 minutes (an invoice
-- being issued right now is not listed), through this one owner function.
-- The policy lets the table owner (the migrations' role, whose password no
-- function has) read unarchived rows of every tenant: the function needs it.
CREATE POLICY archive_sweep ON invoices FOR SELECT TO CURRENT_USER USING (archive IS NULL);
CREATE FUNCTION invoices_awaiting_archive(p_older_than interval, p_limit integer)
    RETURNS TABLE (tenant_id uuid, invoice_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
    SELECT i.tenant_id, i.id FROM public.invoices i
     WHERE i.archive IS NULL
       AND i.issued_at < now() - greatest(p_older_than, interval '5 minutes')
     ORDER BY i.issued_at LIMIT least(greatest(p_limit, 0), 1000)
$$;
REVOKE ALL ON FUNCTION invoices_awaiting_archive(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invoices_awaiting_archive(interval, integer) TO {{app_role}};
