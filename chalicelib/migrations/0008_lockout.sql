-- Lock-out with exponential back-off after repeated failed credentials (a
-- password for an account from an address, a password for an account from
-- anywhere, a second-factor code for a user). Buckets are SHA-256 digests of
-- their key, as for rate limits; all times are the database's clock.

CREATE TABLE lockouts (
    bucket           bytea PRIMARY KEY CHECK (octet_length(bucket) = 32),
    failures         integer NOT NULL CHECK (failures >= 1),
    last_failure_at  timestamptz NOT NULL,
    locked_until     timestamptz
);
CREATE INDEX lockouts_last_failure ON lockouts (last_failure_at);

-- Seconds until the bucket may try again (0: it may).
CREATE FUNCTION lockout_wait(p_bucket bytea) RETURNS integer
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
        SELECT coalesce(max(greatest(0, ceil(extract(epoch FROM l.locked_until - now()))))::integer, 0)
        FROM lockouts l WHERE l.bucket = p_bucket
    $$;

-- Count a failure; from the p_free-th on, lock for p_base doubling with each
-- further failure, at most p_cap. Failures older than a day are forgotten.
-- Returns the seconds locked (0: not locked).
CREATE FUNCTION lockout_fail(p_bucket bytea, p_free integer, p_base interval, p_cap interval)
    RETURNS integer
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    counted integer;
    locked interval;
BEGIN
    IF p_free < 1 OR p_base < interval '1 second' OR p_cap < p_base
       OR p_cap > interval '1 day' THEN
        RAISE EXCEPTION 'lockouts: free >= 1, 1 s <= base <= cap <= 1 day' USING ERRCODE = '22023';
    END IF;
    IF random() < 0.01 THEN
        DELETE FROM lockouts WHERE last_failure_at < now() - interval '1 day';
    END IF;
    INSERT INTO lockouts AS l (bucket, failures, last_failure_at)
        VALUES (p_bucket, 1, now())
        ON CONFLICT (bucket) DO UPDATE SET
            failures = CASE WHEN l.last_failure_at < now() - interval '1 day' THEN 1
                            ELSE least(l.failures + 1, 1000000) END,
            last_failure_at = now()
        RETURNING l.failures INTO counted;
    IF counted < p_free THEN
        RETURN 0;
    END IF;
    locked := least(p_cap, p_base * power(2, least(counted - p_free, 30)));
    UPDATE lockouts SET locked_until = greatest(coalesce(locked_until, now()), now() + locked)
        WHERE bucket = p_bucket
        RETURNING greatest(1, ceil(extract(epoch FROM locked_until - now())))::integer
        INTO counted;
    RETURN counted;
END
$$;

-- A success forgets the failures.
CREATE FUNCTION lockout_clear(p_bucket bytea) RETURNS void
    LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$ DELETE FROM lockouts WHERE bucket = p_bucket $$;

REVOKE ALL ON FUNCTION lockout_wait(bytea) FROM PUBLIC;
REVOKE ALL ON FUNCTION lockout_fail(bytea, integer, interval, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION lockout_clear(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION lockout_wait(bytea) TO {{app_role}};
GRANT EXECUTE ON FUNCTION lockout_fail(bytea, integer, interval, interval) TO {{app_role}};
GRANT EXECUTE ON FUNCTION lockout_clear(bytea) TO {{app_role}};
-- No direct access to the table: the application cannot read or reset it
-- except by a success through lockout_clear().
