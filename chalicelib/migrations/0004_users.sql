-- Users: each belongs to one tenant with one role. Emails are unique across
-- tenants (one login, one account) and stored normalised (lower case).

CREATE TABLE users (
    id                   uuid PRIMARY KEY,
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    email                text NOT NULL
                         CHECK (email = lower(email) AND octet_length(email) <= 254
                                AND email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'),
    role                 text NOT NULL
                         CHECK (role IN ('owner', 'accountant', 'member', 'platform_admin')),
    password_hash        text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    password_changed_at  timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now()
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
    RETURNS TABLE (user_id uuid, tenant_id uuid, role text, password_hash text)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT u.id, u.tenant_id, u.role, u.password_hash FROM users u WHERE u.email = p_email
    $$;
REVOKE ALL ON FUNCTION auth_login_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION auth_login_lookup(text) TO {{app_role}};

-- The application creates users and changes passwords; it can never change
-- anyone's role, email or tenant (UPDATE is granted on two columns only).
GRANT SELECT, INSERT ON users TO {{app_role}};
GRANT UPDATE (password_hash, password_changed_at) ON users TO {{app_role}};
