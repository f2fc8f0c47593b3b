-- An API key's last use is stamped at most once a minute. Stamping it on every
-- request made every machine call a write transaction (a WAL flush before the
-- answer) for a figure shown to the minute at best. The lookup is otherwise
-- unchanged: the live key for this secret hash, by exact hash, as the owner.
CREATE OR REPLACE FUNCTION auth_api_key(p_secret_hash bytea)
    RETURNS TABLE (key_id uuid, tenant_id uuid, scopes text[])
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    live api_keys%ROWTYPE;
BEGIN
    SELECT * INTO live FROM api_keys k
    WHERE k.secret_hash = p_secret_hash AND k.revoked_at IS NULL AND k.expires_at > now();
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF live.last_used_at IS NULL OR live.last_used_at < now() - interval '1 minute' THEN
        -- The stamp re-checks the key is live after any wait for its row lock:
        -- a revocation committed meanwhile refuses this call (as 0009's did).
        UPDATE api_keys k SET last_used_at = now()
        WHERE k.id = live.id AND k.revoked_at IS NULL AND k.expires_at > now();
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;
    key_id := live.id;
    tenant_id := live.tenant_id;
    scopes := live.scopes;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION auth_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_api_key(bytea) TO {{app_role}};
