-- Anchors: best-effort external timestamps of each closing's SHA-256
-- (closings.closing_sha256), outside the chain. Each row is one closing at one
-- endpoint by one method:
--   opentimestamps: an OpenTimestamps calendar; proof = the serialized detached
--                   timestamp file (.ots: header magic, version 1, op SHA-256, the
--                   digest, the timestamp), pending Bitcoin confirmation while
--                   'submitted', 'complete' once it holds a Bitcoin block header
--                   attestation;
--   rfc3161:        a time-stamping authority; proof = the DER TimeStampToken (CMS
--                   SignedData over a TSTInfo), 'complete' as soon as it verified.
-- 'pending' = not obtained yet (attempts and last_error tell why). A failure here
-- never touches the chain: no ledger entry, no closing, depends on an anchor.
--
-- The engine keeps: one row per (closing, method, endpoint); the digest is the
-- closing's own; what identifies a row never changes; every update is exactly
-- one attempt and never goes back (pending -> submitted -> complete); a complete
-- anchor never changes; a proof is for this digest (an .ots file's header names
-- it; a token contains it); no DELETE or TRUNCATE, the owner included.

CREATE TABLE anchors (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    closing_id      uuid NOT NULL,
    method          text NOT NULL CHECK (method IN ('opentimestamps', 'rfc3161')),
    endpoint        text NOT NULL CHECK (char_length(endpoint) <= 300
                        AND endpoint ~ '^https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~/-]*)?$'),
    digest          bytea NOT NULL CHECK (octet_length(digest) = 32),
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'submitted', 'complete')),
    proof           bytea CHECK (octet_length(proof) BETWEEN 1 AND 262144),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Our own words only: a status code or an exception type, never a server's text.
    last_error      text CHECK (last_error ~ '^[A-Za-z0-9 ._:()/-]{1,120}$'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at timestamptz,
    submitted_at    timestamptz,
    completed_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, closing_id, method, endpoint),
    FOREIGN KEY (tenant_id, closing_id) REFERENCES closings (tenant_id, id),
    CHECK ((status = 'pending') = (proof IS NULL)),
    CHECK (status <> 'submitted' OR method = 'opentimestamps'),
    CHECK ((status = 'complete') = (completed_at IS NOT NULL)),
    CHECK (proof IS NULL
           OR (method = 'opentimestamps' AND substring(proof FROM 1 FOR 65) =
               '\x004f70656e54696d657374616d7073000050726f6f6600bf89e2e884e892940108'::bytea
               || digest)
           OR (method = 'rfc3161' AND get_byte(proof, 0) = 48 AND position(digest IN proof) > 0))
);
CREATE INDEX anchors_open ON anchors (last_attempt_at NULLS FIRST, created_at)
    WHERE status <> 'complete';
ALTER TABLE anchors ENABLE ROW LEVEL SECURITY;
ALTER TABLE anchors FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON anchors
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION anchor_check_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    sealed bytea;
BEGIN
    SELECT c.closing_sha256 INTO sealed FROM closings c
     WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.closing_id;
    IF NOT FOUND OR NEW.digest IS DISTINCT FROM sealed THEN
        RAISE EXCEPTION 'anchors: the digest is not closing %''s', NEW.closing_id
            USING ERRCODE = 'EA001';
    END IF;
    IF NEW.status <> 'pending' OR NEW.proof IS NOT NULL OR NEW.attempts <> 0
       OR NEW.last_error IS NOT NULL THEN
        RAISE EXCEPTION 'anchors: an anchor starts pending, with no proof and no attempt'
            USING ERRCODE = 'EA002';
    END IF;
    NEW.created_at := now();
    NEW.last_attempt_at := NULL;
    NEW.submitted_at := NULL;
    NEW.completed_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER anchor_check_insert BEFORE INSERT ON anchors
    FOR EACH ROW EXECUTE FUNCTION anchor_check_insert();

CREATE FUNCTION anchor_check_update() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    rank_old integer := array_position(ARRAY['pending', 'submitted', 'complete'], OLD.status);
    rank_new integer := array_position(ARRAY['pending', 'submitted', 'complete'], NEW.status);
BEGIN
    IF OLD.status = 'complete' THEN
        RAISE EXCEPTION 'anchors: a complete anchor never changes' USING ERRCODE = 'EA003';
    END IF;
    IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id OR NEW.id IS DISTINCT FROM OLD.id
       OR NEW.closing_id IS DISTINCT FROM OLD.closing_id
       OR NEW.method IS DISTINCT FROM OLD.method OR NEW.endpoint IS DISTINCT FROM OLD.endpoint
       OR NEW.digest IS DISTINCT FROM OLD.digest
       OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'anchors: closing, method, endpoint and digest never change'
            USING ERRCODE = 'EA004';
    END IF;
    IF NEW.attempts IS DISTINCT FROM OLD.attempts + 1 THEN
        RAISE EXCEPTION 'anchors: each update records exactly one attempt'
            USING ERRCODE = 'EA005';
    END IF;
    IF rank_new < rank_old THEN
        RAISE EXCEPTION 'anchors: % cannot go back to %', OLD.status, NEW.status
            USING ERRCODE = 'EA005';
    END IF;
    NEW.last_attempt_at := now();
    NEW.submitted_at := CASE WHEN NEW.status = 'pending' THEN NULL
                             ELSE coalesce(OLD.submitted_at, now()) END;
    NEW.completed_at := CASE WHEN NEW.status = 'complete' THEN now() END;
    RETURN NEW;
END
$$;
CREATE TRIGGER anchor_check_update BEFORE UPDATE ON anchors
    FOR EACH ROW EXECUTE FUNCTION anchor_check_update();
CREATE TRIGGER anchors_refuse_delete BEFORE DELETE ON anchors
    FOR EACH ROW EXECUTE FUNCTION refuse_mutation();
CREATE TRIGGER anchors_refuse_truncate BEFORE TRUNCATE ON anchors
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- The scheduled anchoring job's only views across tenants (ids only), as in
-- tenants_to_seal (0016): read-only policies open anchors and closings to the
-- owner only while these functions run.
CREATE POLICY anchor_schedule ON anchors FOR SELECT TO CURRENT_USER
    USING (current_setting('app.anchor_scan', true) = 'on');
CREATE POLICY anchor_schedule ON closings FOR SELECT TO CURRENT_USER
    USING (current_setting('app.anchor_scan', true) = 'on');

-- Anchors not complete yet, least recently tried first; p_endpoints (when not
-- NULL) keeps those at endpoints still configured, so an endpoint removed from
-- the configuration never crowds the others out.
CREATE FUNCTION anchors_to_retry(p_limit integer, p_endpoints text[] DEFAULT NULL)
    RETURNS TABLE (tenant_id uuid, anchor_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM set_config('app.anchor_scan', 'on', true);
    RETURN QUERY
    SELECT a.tenant_id, a.id FROM public.anchors a
     WHERE a.status <> 'complete'
       AND (p_endpoints IS NULL OR a.endpoint = ANY (p_endpoints))
     ORDER BY a.last_attempt_at NULLS FIRST, a.created_at, a.tenant_id, a.id
     LIMIT least(greatest(p_limit, 0), 100000);
    PERFORM set_config('app.anchor_scan', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION anchors_to_retry(integer, text[]) FROM PUBLIC;

-- Closings sealed since p_since that lack an anchor at one of p_endpoints
-- (the closings the hourly schedule sealed: nobody anchored them yet).
CREATE FUNCTION closings_to_anchor(p_limit integer, p_endpoints text[], p_since timestamptz)
    RETURNS TABLE (tenant_id uuid, closing_id uuid)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS $$
BEGIN
    PERFORM set_config('app.anchor_scan', 'on', true);
    RETURN QUERY
    SELECT c.tenant_id, c.id FROM public.closings c
     WHERE c.sealed_at >= p_since
       AND EXISTS (SELECT 1 FROM unnest(p_endpoints) AS e(endpoint)
                    WHERE NOT EXISTS (SELECT 1 FROM public.anchors a
                                       WHERE a.tenant_id = c.tenant_id
                                         AND a.closing_id = c.id
                                         AND a.endpoint = e.endpoint))
     ORDER BY c.sealed_at, c.tenant_id, c.id
     LIMIT least(greatest(p_limit, 0), 100000);
    PERFORM set_config('app.anchor_scan', 'off', true);
END
$$;
REVOKE ALL ON FUNCTION closings_to_anchor(integer, text[], timestamptz) FROM PUBLIC;

GRANT SELECT, INSERT ON anchors TO {{app_role}};
GRANT UPDATE (status, proof, attempts, last_error) ON anchors TO {{app_role}};
GRANT EXECUTE ON FUNCTION anchors_to_retry(integer, text[]) TO {{app_role}};
GRANT EXECUTE ON FUNCTION closings_to_anchor(integer, text[], timestamptz) TO {{app_role}};
