-- A sign-up waits for its address to be confirmed. Nothing is created until
-- the mailbox's owner brings back the token, and the answer to a sign-up is
-- the same whether or not the address already has an account (that address
-- gets a notice instead of a token). Only the token's SHA-256 and the address
-- are kept: the tenant name and the password are given with the token, by
-- the mailbox's owner, never by whoever asked for the link. The app role cannot read,
-- change or delete rows: it adds one through signup_pend() and consumes one,
-- once and before it expires, through signup_take(), in the transaction that
-- creates the tenant (a failure there leaves the row for a retry).

CREATE TABLE pending_signups (
    token_hash    bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    email         text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX pending_signups_expiry ON pending_signups (expires_at);
ALTER TABLE pending_signups ENABLE ROW LEVEL SECURITY;
ALTER TABLE pending_signups FORCE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON pending_signups TO CURRENT_USER USING (true) WITH CHECK (true);

CREATE FUNCTION signup_pend(p_token_hash bytea, p_email text, p_lifetime interval)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF p_lifetime <= interval '0' OR p_lifetime > interval '2 days' THEN
        RAISE EXCEPTION 'pending_signups: lifetime must be within two days'
            USING ERRCODE = '22023';
    END IF;
    DELETE FROM pending_signups WHERE expires_at <= now();
    INSERT INTO pending_signups (token_hash, email, expires_at)
        VALUES (p_token_hash, p_email, now() + p_lifetime);
END
$$;

CREATE FUNCTION signup_take(p_token_hash bytea) RETURNS TABLE (email text)
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    DELETE FROM pending_signups p
    WHERE p.token_hash = p_token_hash AND p.expires_at > now()
    RETURNING p.email
$$;

CREATE FUNCTION purge_pending_signups() RETURNS bigint
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    WITH gone AS (DELETE FROM pending_signups WHERE expires_at <= now() RETURNING 1)
    SELECT count(*) FROM gone
$$;

REVOKE ALL ON FUNCTION signup_pend(bytea, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION signup_take(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION purge_pending_signups() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION signup_pend(bytea, text, interval) TO {{app_role}};
GRANT EXECUTE ON FUNCTION signup_take(bytea) TO {{app_role}};
GRANT EXECUTE ON FUNCTION purge_pending_signups() TO {{app_role}};
