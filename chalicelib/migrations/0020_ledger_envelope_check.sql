-- The ledger payload's envelope check, false (never NULL) on every malformed
-- envelope.
--
-- 0002's ledger_payload_is_envelope() returned NULL when `at`, `data` or `v`
-- was missing (jsonb_typeof(NULL) is NULL, and a CHECK passes on NULL), so
-- `{}` or `{"v": 1}` could be appended; one such entry made sealing fail for
-- its tenant. This function returns true or false, nothing else, and also
-- checks the recording time that closings read ("at": a UTC calendar instant
-- written "YYYY-MM-DDTHH:MM:SS.ffffffZ", years 1000-2999, fixed width, so text
-- order is time order).
--
-- The new constraint is added NOT VALID: from this commit on, every insert is
-- checked (whoever inserts), without scanning the chain under this migration's
-- ACCESS EXCLUSIVE lock. 0021 validates it in its own transaction, where the
-- scan holds only SHARE UPDATE EXCLUSIVE (appends go on meanwhile).
CREATE FUNCTION ledger_payload_envelope_ok(payload text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
DECLARE
    j jsonb;
    at text;
BEGIN
    IF payload IS NULL THEN
        RETURN false;
    END IF;
    j := payload::jsonb;  -- not JSON at all: the cast raises, which refuses the row too
    IF jsonb_typeof(j) IS DISTINCT FROM 'object' THEN
        RETURN false;
    END IF;
    at := j ->> 'at';
    IF NOT coalesce((j - 'at' - 'data' - 'v') = '{}'::jsonb
        AND jsonb_typeof(j -> 'at') = 'string'
        AND at ~ '^[12][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z$'
        AND jsonb_typeof(j -> 'data') = 'object'
        AND jsonb_typeof(j -> 'v') = 'number' AND (j ->> 'v') = '1', false) THEN
        RETURN false;
    END IF;
    -- A calendar day (no 30 February): the day is at most the month's last.
    RETURN substr(at, 9, 2)::int <= extract(day FROM
        make_date(substr(at, 1, 4)::int, substr(at, 6, 2)::int, 1) + interval '1 month - 1 day');
END
$$;

ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_envelope
    CHECK (ledger_payload_envelope_ok(payload)) NOT VALID;
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_payload_check;
DROP FUNCTION ledger_payload_is_envelope(text);
