-- TOTP second factor: one secret per user (sealed with the tenant's data key,
-- bound to its table, column and user id), one-time recovery codes stored as
-- digests, and a per-session mark that the second factor was passed.

CREATE TABLE user_totp (
    user_id         uuid PRIMARY KEY,
    tenant_id       uuid NOT NULL,
    -- The confirmed secret, and one waiting for its first code (enrolment or
    -- replacement); both sealed (AES-256-GCM, see domain/encryption.py).
    secret          bytea,
    pending_secret  bytea,
    confirmed_at    timestamptz,
    -- The highest time step a code was accepted for: a code is good once, and
    -- never for a step at or before one already used (RFC 6238 §5.2).
    last_step       bigint NOT NULL DEFAULT 0 CHECK (last_step >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((secret IS NULL) = (confirmed_at IS NULL)),
    FOREIGN KEY (user_id, tenant_id) REFERENCES users (id, tenant_id)
);
ALTER TABLE user_totp ENABLE ROW LEVEL SECURITY;
ALTER TABLE user_totp FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON user_totp
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
-- auth_session_touch() (as the owner) asks whether a user has a second factor.
CREATE POLICY session_lookup ON user_totp FOR SELECT TO CURRENT_USER USING (true);

-- A second factor once confirmed is never removed by the application, and the
-- used-step mark never moves back (that would re-open used codes).
CREATE FUNCTION user_totp_check_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.last_step < OLD.last_step THEN
        RAISE EXCEPTION 'user_totp: last_step never goes back' USING ERRCODE = 'EL001';
    END IF;
    IF OLD.secret IS NOT NULL AND NEW.secret IS NULL THEN
        RAISE EXCEPTION 'user_totp: a confirmed second factor is never removed'
            USING ERRCODE = 'EL001';
    END IF;
    IF NEW.user_id IS DISTINCT FROM OLD.user_id OR NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
        RAISE EXCEPTION 'user_totp: a second factor stays with its user' USING ERRCODE = 'EL001';
    END IF;
    -- A step is a 30-second slot of the engine's clock (one of drift allowed):
    -- a value from the future would refuse every code to come, for good.
    IF NEW.last_step > floor(extract(epoch FROM now()) / 30) + 2 THEN
        RAISE EXCEPTION 'user_totp: last_step lies in the future' USING ERRCODE = 'EL002';
    END IF;
    IF NEW.secret IS DISTINCT FROM OLD.secret THEN
        NEW.confirmed_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER user_totp_check_update BEFORE UPDATE ON user_totp
    FOR EACH ROW EXECUTE FUNCTION user_totp_check_update();

-- A new row starts unconfirmed: the first code confirms it.
CREATE FUNCTION user_totp_check_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.secret IS NOT NULL OR NEW.confirmed_at IS NOT NULL OR NEW.pending_secret IS NULL THEN
        RAISE EXCEPTION 'user_totp: a second factor starts pending its first code'
            USING ERRCODE = 'EL002';
    END IF;
    NEW.created_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER user_totp_check_insert BEFORE INSERT ON user_totp
    FOR EACH ROW EXECUTE FUNCTION user_totp_check_insert();

-- The application starts enrolments; confirming one and spending codes go
-- through the functions below, which also mark the session.
GRANT SELECT, INSERT ON user_totp TO {{app_role}};
GRANT UPDATE (pending_secret) ON user_totp TO {{app_role}};

-- Recovery codes: 80 random bits each, shown once; kept as SHA-256 digests
-- (a slow hash adds nothing against guessing 80 random bits). Each works once.
CREATE TABLE recovery_codes (
    tenant_id   uuid NOT NULL,
    user_id     uuid NOT NULL,
    code_hash   bytea NOT NULL CHECK (octet_length(code_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz,
    PRIMARY KEY (user_id, code_hash),
    FOREIGN KEY (user_id, tenant_id) REFERENCES users (id, tenant_id)
);
ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE recovery_codes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON recovery_codes
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION recovery_codes_check() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.used_at IS NOT NULL THEN
            RAISE EXCEPTION 'recovery_codes: a code starts unused' USING ERRCODE = 'EL002';
        END IF;
        RETURN NEW;
    END IF;
    IF OLD.used_at IS NOT NULL THEN
        RAISE EXCEPTION 'recovery_codes: a used code stays used' USING ERRCODE = 'EL001';
    END IF;
    NEW.used_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER recovery_codes_check BEFORE INSERT OR UPDATE ON recovery_codes
    FOR EACH ROW EXECUTE FUNCTION recovery_codes_check();

-- The application adds codes and deletes a user's set when a new second
-- factor replaces it; spending one goes through second_factor_pass_recovery().
GRANT SELECT, INSERT, DELETE ON recovery_codes TO {{app_role}};

-- Sessions: when (engine clock) this session passed the second factor.
ALTER TABLE sessions ADD COLUMN mfa_at timestamptz;

CREATE OR REPLACE FUNCTION sessions_check_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    NEW.created_at := now();
    NEW.last_seen_at := now();
    NEW.mfa_at := NULL;  -- every session starts without its second factor
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

-- Only revoked_at and mfa_at change: a revoked session stays revoked, and the
-- second-factor mark is set once, at the engine's now, on a live session.
CREATE OR REPLACE FUNCTION sessions_check_revoke() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'sessions: a revoked session stays revoked' USING ERRCODE = 'EL001';
    END IF;
    IF NEW.mfa_at IS DISTINCT FROM OLD.mfa_at THEN
        IF OLD.mfa_at IS NOT NULL OR NEW.mfa_at IS NULL OR OLD.revoked_at IS NOT NULL THEN
            RAISE EXCEPTION 'sessions: the second-factor mark is set once, on a live session'
                USING ERRCODE = 'EL001';
        END IF;
        NEW.mfa_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- The only ways a session passes the second factor: each spends something in
-- the same statement (a time step, strictly later than any used, never in the
-- future; or an unused recovery code) for the session's own user, in the
-- transaction's tenant. The application cannot set mfa_at by itself.
CREATE FUNCTION second_factor_session(p_token_hash bytea) RETURNS uuid
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    found_user uuid;
BEGIN
    IF app_current_tenant() IS NULL THEN
        RAISE EXCEPTION 'second factor: no tenant set for this transaction'
            USING ERRCODE = 'EL003';
    END IF;
    SELECT s.user_id INTO found_user FROM sessions s
        WHERE s.token_hash = p_token_hash AND s.tenant_id = app_current_tenant()
          AND s.revoked_at IS NULL AND s.expires_at > now()
        FOR UPDATE;
    RETURN found_user;
END
$$;

CREATE FUNCTION second_factor_mark(p_token_hash bytea) RETURNS void
    LANGUAGE sql SET search_path = public, pg_temp
    AS $$ UPDATE sessions SET mfa_at = now() WHERE token_hash = p_token_hash AND mfa_at IS NULL $$;

CREATE FUNCTION second_factor_pass_step(p_token_hash bytea, p_step bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    found_user uuid := second_factor_session(p_token_hash);
BEGIN
    UPDATE user_totp SET last_step = p_step
        WHERE user_id = found_user AND tenant_id = app_current_tenant()
          AND secret IS NOT NULL AND last_step < p_step;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM second_factor_mark(p_token_hash);
    RETURN true;
END
$$;

CREATE FUNCTION second_factor_pass_recovery(p_token_hash bytea, p_digest bytea)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    found_user uuid := second_factor_session(p_token_hash);
BEGIN
    UPDATE recovery_codes SET used_at = now()
        WHERE user_id = found_user AND tenant_id = app_current_tenant()
          AND code_hash = p_digest AND used_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM second_factor_mark(p_token_hash);
    RETURN true;
END
$$;

-- The pending secret (re-sealed for its new column) becomes the second factor
-- with the step of its first code.
CREATE FUNCTION second_factor_confirm(p_token_hash bytea, p_sealed bytea, p_step bigint)
    RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    found_user uuid := second_factor_session(p_token_hash);
BEGIN
    UPDATE user_totp SET secret = p_sealed, pending_secret = NULL, last_step = p_step
        WHERE user_id = found_user AND tenant_id = app_current_tenant()
          AND pending_secret IS NOT NULL AND last_step < p_step;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM second_factor_mark(p_token_hash);
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION second_factor_session(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION second_factor_mark(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION second_factor_pass_step(bytea, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION second_factor_pass_recovery(bytea, bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION second_factor_confirm(bytea, bytea, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION second_factor_pass_step(bytea, bigint) TO {{app_role}};
GRANT EXECUTE ON FUNCTION second_factor_pass_recovery(bytea, bytea) TO {{app_role}};
GRANT EXECUTE ON FUNCTION second_factor_confirm(bytea, bytea, bigint) TO {{app_role}};

-- The session lookup now also says whether the session passed the second
-- factor and whether its user has one (then every session must pass it).
DROP FUNCTION auth_session_touch(bytea);
CREATE FUNCTION auth_session_touch(p_token_hash bytea)
    RETURNS TABLE (user_id uuid, tenant_id uuid, role text, credential_version integer,
                   mfa_passed boolean, has_totp boolean)
    LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        UPDATE sessions s SET last_seen_at = now()
        FROM users u
        WHERE s.token_hash = p_token_hash
          AND u.id = s.user_id AND u.tenant_id = s.tenant_id
          AND u.credential_version = s.credential_version
          AND s.revoked_at IS NULL AND s.expires_at > now()
          AND s.last_seen_at > now() - s.idle_timeout
        RETURNING s.user_id, u.tenant_id, u.role, s.credential_version,
                  s.mfa_at IS NOT NULL,
                  EXISTS (SELECT 1 FROM user_totp t
                          WHERE t.user_id = s.user_id AND t.secret IS NOT NULL)
    $$;
REVOKE ALL ON FUNCTION auth_session_touch(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_session_touch(bytea) TO {{app_role}};
