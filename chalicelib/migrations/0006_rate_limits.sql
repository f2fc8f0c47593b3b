-- Rate limits shared by every function instance: fixed windows counted in the
-- database, on the database's clock. Buckets are SHA-256 digests of their key
-- ("login-ip|203.0.113.7"), so no address or email is stored here.

-- UNLOGGED: counters are worth nothing after a crash, and cheap writes matter.
CREATE UNLOGGED TABLE rate_limit_hits (
    bucket        bytea NOT NULL CHECK (octet_length(bucket) = 32),
    window_start  timestamptz NOT NULL,
    hits          bigint NOT NULL CHECK (hits >= 1),
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limit_hits_window ON rate_limit_hits (window_start);

-- Count one hit in the current window of `p_window`; allowed while the count
-- stays within p_limit, else the seconds until the window ends.
CREATE FUNCTION rate_limit_hit(p_bucket bytea, p_window interval, p_limit integer)
    RETURNS TABLE (allowed boolean, retry_after integer)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    started timestamptz;
    counted bigint;
BEGIN
    IF p_window < interval '1 second' OR p_window > interval '1 day' OR p_limit < 1 THEN
        RAISE EXCEPTION 'rate limits: window 1 s..1 day, limit >= 1' USING ERRCODE = '22023';
    END IF;
    started := date_bin(p_window, now(), timestamptz '2000-01-01 00:00:00+00');
    -- Now and then, forget windows older than a day (the longest allowed).
    IF random() < 0.01 THEN
        DELETE FROM rate_limit_hits WHERE window_start < now() - interval '1 day';
    END IF;
    INSERT INTO rate_limit_hits AS r (bucket, window_start, hits)
        VALUES (p_bucket, started, 1)
        ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + 1
        RETURNING r.hits INTO counted;
    allowed := counted <= p_limit;
    retry_after := CASE WHEN allowed THEN 0
                   ELSE greatest(1, ceil(extract(epoch FROM started + p_window - now()))::integer)
                   END;
    RETURN NEXT;
END
$$;
REVOKE ALL ON FUNCTION rate_limit_hit(bytea, interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION rate_limit_hit(bytea, interval, integer) TO {{app_role}};
-- The application has no direct access to the counters (it cannot reset them).
