-- Users: each belongs to one tenant with one role. Emails are unique across
-- tenants (one login, one account) and stored normalised (lower case).
-- credential_version counts password changes: a session is valid only for the
-- version its login verified, so a password change ends every older session.

CREATE TABLE users (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    email                text NOT NULL
                         CHECK (email = lower(email) AND octet_length(email) <= 254
                                AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'),
    role                 text NOT NULL
                         CHECK (role IN ('owner', 'accountant', 'member', 'platform_admin')),
    password_hash        text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    credential_version   integer NOT NULL DEFAULT 1 CHECK (credential_version >= 1),
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, tenant_id)
);
CREATE UNIQUE INDEX users_email ON users (email);
CREATE INDEX users_tenant ON users (tenant_id);

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
ALTER TABLE users FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON users
    USING (tenant_id = app_current_tenant())
    WITH CHECK (tenant_id = app_current_tenant());
-- Login comes before any tenant is known. The only read across tenants is
-- auth_login_lookup() below, which runs as the owner: the owner may read users.
CREATE POLICY login_lookup ON users FOR SELECT TO CURRENT_USER USING (true);

-- One exact email in, at most one account out: what checking a password needs.
CREATE FUNCTION auth_login_lookup(p_email text)
    RETURNS TABLE (user_id uuid, tenant_id uuid, role text, password_hash text,
                   credential_version integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT u.id, u.tenant_id, u.role, u.password_hash, u.credential_version
        FROM users u WHERE u.email = p_email
    $$;
REVOKE ALL ON FUNCTION auth_login_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_login_lookup(text) TO {{app_role}};

-- A new user starts at credential version 1; platform admins are created by
-- operators (the table owner), never by the application.
CREATE FUNCTION users_check_insert() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.role = 'platform_admin'
       AND current_user <> (SELECT pg_catalog.pg_get_userbyid(c.relowner)
                            FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID) THEN
        RAISE EXCEPTION 'users: platform admins are created by operators only'
            USING ERRCODE = '42501';
    END IF;
    NEW.credential_version := 1;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_check_insert BEFORE INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION users_check_insert();

-- The credential version only ever moves forward (moving it back would revive
-- sessions a password change ended).
CREATE FUNCTION users_check_update() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.credential_version < OLD.credential_version THEN
        RAISE EXCEPTION 'users: credential_version never goes back' USING ERRCODE = 'EL001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_check_update BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_check_update();

-- The application creates users and changes passwords; it can never change
-- anyone's role, email or tenant (UPDATE is granted on password columns only).
GRANT SELECT, INSERT ON users TO {{app_role}};
GRANT UPDATE (password_hash, credential_version, password_changed_at) ON users TO {{app_role}};
