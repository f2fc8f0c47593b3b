-- Server-side sessions: the browser holds an opaque random token; the database
-- holds only its SHA-256, with absolute expiry, idle timeout and revocation.

CREATE TABLE sessions (
    token_hash    bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    tenant_id     uuid NOT NULL REFERENCES tenants (id),
    user_id       uuid NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL CHECK (expires_at > created_at),
    revoked_at    timestamptz
);
CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

ALTER TABLE sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sessions
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
-- A request's tenant is known only once its session is: auth_session_touch()
-- (as the owner) is the one read across tenants, by exact token hash.
CREATE POLICY session_lookup ON sessions TO CURRENT_USER USING (true) WITH CHECK (true);

-- The live session for this token hash, its last-seen time moved to p_now;
-- nothing when unknown, revoked, expired or idle longer than p_idle.
CREATE FUNCTION auth_session_touch(p_token_hash bytea, p_now timestamptz, p_idle interval)
    RETURNS TABLE (user_id uuid, tenant_id uuid, role text)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        UPDATE sessions s SET last_seen_at = p_now
        FROM users u
        WHERE s.token_hash = p_token_hash AND u.id = s.user_id
          AND s.revoked_at IS NULL AND s.expires_at > p_now
          AND s.last_seen_at > p_now - p_idle
        RETURNING s.user_id, s.tenant_id, u.role
    $$;
REVOKE ALL ON FUNCTION auth_session_touch(bytea, timestamptz, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_touch(bytea, timestamptz, interval) TO {{app_role}};

-- The application opens sessions and revokes them; it never un-revokes one,
-- extends its expiry or moves it to another user (only revoked_at is updatable,
-- and only from NULL).
CREATE FUNCTION sessions_check_revoke() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'sessions: a revoked session stays revoked' USING ERRCODE = 'EL001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sessions_check_revoke BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_check_revoke();

GRANT SELECT, INSERT ON sessions TO {{app_role}};
GRANT UPDATE (revoked_at) ON sessions TO {{app_role}};
