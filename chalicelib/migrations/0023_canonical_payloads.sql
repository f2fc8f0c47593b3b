-- The engine refuses a ledger payload that is not RFC 8785 canonical JSON.
--
-- The hash covers the payload's exact text, so two texts of the same JSON are two
-- different entries; the verifiers (chalicelib/domain/canonical_json.py, online and
-- offline) refuse a text that is not the canonical one, and until now the engine let
-- any JSON text in (whitespace, key order, \u escapes, -0, 1e2, integers beyond 2^53,
-- repeated keys), whoever inserted it.
--
-- ledger_canonical_json(j) writes the canonical text of a jsonb value of the ledger's
-- subset, or NULL outside it: objects (keys sorted by UTF-16 code units), arrays,
-- strings (escape_json escapes exactly as RFC 8785: \" \\ \b \f \n \r \t and other
-- controls as \u00xx, lowercase), true, false, null, and integers within ±(2^53-1)
-- (no fraction, no exponent: amounts are decimal strings). A payload is canonical when
-- it equals the canonical text of what it parses to: a repeated key (jsonb keeps the
-- last), a fraction or exponent, "-0", whitespace or an escape that need not be there
-- all make the texts differ. Text jsonb cannot hold (\u0000, a lone surrogate) makes
-- the cast raise, which refuses the row too.
--
-- The same verdicts as canonical_json and the rfc8785 library on one shared table:
-- tests/integration/test_canonical_payloads.py.
--
-- Existing rows are not rewritten. The constraint is added NOT VALID (every new row is
-- checked from this commit on), then validated here; a chain that already holds a
-- non-canonical entry (planted by a superuser) leaves it NOT VALID, still checking
-- every new row, and the verifiers name that entry.

CREATE FUNCTION ledger_utf16_key(k text) RETURNS bytea
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    out bytea := '\x'::bytea;
    c integer;
BEGIN
    -- RFC 8785 orders keys by their UTF-16 code units: as code points, except that a
    -- character at or above U+E000 sorts after every astral one (a surrogate pair).
    FOR i IN 1 .. length(k) LOOP
        c := ascii(substr(k, i, 1));
        IF c >= 65536 THEN
            c := c - 65536;
            out := out || int2send((55296 + (c >> 10) - 65536)::smallint)
                       || int2send((56320 + (c & 1023) - 65536)::smallint);
        ELSE
            out := out || substr(int4send(c), 3, 2);
        END IF;
    END LOOP;
    RETURN out;
END
$$;

CREATE FUNCTION ledger_canonical_json(j jsonb) RETURNS text
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    AS $$
DECLARE
    t text := jsonb_typeof(j);
    parts text[];
    n numeric;
BEGIN
    IF t = 'object' THEN
        IF EXISTS (SELECT FROM jsonb_object_keys(j) k WHERE k ~ '[\uE000-\U0010FFFF]') THEN
            SELECT array_agg(to_json(k)::text || ':' || ledger_canonical_json(j -> k)
                             ORDER BY ledger_utf16_key(k))
              INTO parts FROM jsonb_object_keys(j) k;
        ELSE  -- below U+E000, UTF-8 byte order is UTF-16 order
            SELECT array_agg(to_json(k)::text || ':' || ledger_canonical_json(j -> k)
                             ORDER BY convert_to(k, 'UTF8'))
              INTO parts FROM jsonb_object_keys(j) k;
        END IF;
        IF parts IS NULL THEN
            RETURN '{}';
        END IF;
        -- a NULL part (a value outside the subset) makes the whole text NULL
        RETURN CASE WHEN array_position(parts, NULL) IS NULL
                    THEN '{' || array_to_string(parts, ',') || '}' END;
    ELSIF t = 'array' THEN
        SELECT array_agg(ledger_canonical_json(e) ORDER BY i)
          INTO parts FROM jsonb_array_elements(j) WITH ORDINALITY AS a(e, i);
        IF parts IS NULL THEN
            RETURN '[]';
        END IF;
        RETURN CASE WHEN array_position(parts, NULL) IS NULL
                    THEN '[' || array_to_string(parts, ',') || ']' END;
    ELSIF t = 'number' THEN
        n := j::text::numeric;
        IF j::text !~ '^-?(0|[1-9][0-9]*)$' OR abs(n) > 9007199254740991 THEN
            RETURN NULL;
        END IF;
        RETURN n::text;
    END IF;
    RETURN j::text;  -- a string (escape_json), true, false, null
END
$$;

CREATE FUNCTION ledger_payload_canonical(payload text) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
    AS $$
BEGIN
    -- the cast raises on text that is not JSON, or that jsonb cannot hold
    RETURN coalesce(payload = ledger_canonical_json(payload::jsonb), false);
END
$$;

ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_canonical
    CHECK (ledger_payload_canonical(payload)) NOT VALID;

DO $$
BEGIN
    ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_canonical;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'ledger_entries_canonical left NOT VALID: an existing entry is not canonical';
END
$$;
