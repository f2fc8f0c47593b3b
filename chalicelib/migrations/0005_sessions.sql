-- Server-side sessions: the browser holds an opaque random token; the database
-- holds only its SHA-256. All session times are the database's own clock: the
-- application cannot back-date, extend or revive a session.

CREATE TABLE sessions (
    token_hash          bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    tenant_id           uuid NOT NULL,
    user_id             uuid NOT NULL,
    credential_version  integer NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    last_seen_at        timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    idle_timeout        interval NOT NULL
                        CHECK (idle_timeout BETWEEN interval '1 minute' AND interval '2 hours'),
    revoked_at          timestamptz,
    -- A session acts in its user's own tenant, never another.
    FOREIGN KEY (user_id, tenant_id) REFERENCES users (id, tenant_id)
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

-- A new session starts now, live, for at most 24 hours, and only for the
-- credential version its user has now (a login that checked a password since
-- changed cannot open one).
CREATE FUNCTION sessions_check_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.created_at := now();
    NEW.last_seen_at := now();
    IF NEW.revoked_at IS NOT NULL
       OR NEW.expires_at <= now() OR NEW.expires_at > now() + interval '24 hours' THEN
        RAISE EXCEPTION 'sessions: a session starts live and lasts at most 24 hours'
            USING ERRCODE = 'EL002';
    END IF;
    IF NEW.credential_version IS DISTINCT FROM (
        SELECT u.credential_version FROM public.users u
        WHERE u.id = NEW.user_id AND u.tenant_id = NEW.tenant_id) THEN
        RAISE EXCEPTION 'sessions: the credentials changed since they were checked'
            USING ERRCODE = 'EL004';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER sessions_check_insert BEFORE INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION sessions_check_insert();

-- The live session for this token hash, its last-seen time moved to now();
-- nothing when unknown, revoked, expired, idle too long, or when its user's
-- password changed since it was opened.
CREATE FUNCTION auth_session_touch(p_token_hash bytea)
    RETURNS TABLE (user_id uuid, tenant_id uuid, role text, credential_version integer)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        UPDATE sessions s SET last_seen_at = now()
        FROM users u
        WHERE s.token_hash = p_token_hash
          AND u.id = s.user_id AND u.tenant_id = s.tenant_id
          AND u.credential_version = s.credential_version
          AND s.revoked_at IS NULL AND s.expires_at > now()
          AND s.last_seen_at > now() - s.idle_timeout
        RETURNING s.user_id, u.tenant_id, u.role, s.credential_version
    $$;
REVOKE ALL ON FUNCTION auth_session_touch(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_touch(bytea) TO {{app_role}};

-- The application opens and revokes sessions, nothing else: only revoked_at is
-- updatable, and a revoked session stays revoked.
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
