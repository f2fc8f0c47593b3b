-- Quotes (devis): a validated invoice draft offered until a date, which may
-- later become one invoice.
--
-- A quote is not an invoice: it takes its reference (D-000001, D-000002...)
-- from its tenant's own counter, never from an invoice series, so making
-- quotes consumes no invoice number. The counter moves only through
-- quote_number_next() (row locked until the transaction ends) and, as for
-- invoices, a deferred check refuses a counter whose last number has no
-- quote: a failed transaction leaves no gap (not a legal duty for quotes, but
-- a reference never given twice nor skipped is easier to talk about).
--
-- A quote is never edited nor deleted, the table owner included: every column
-- is frozen except the conversion (the invoice it became, the caller's key and
-- request fingerprint), written once from NULL, always together, and only with
-- an invoice (380) of the same tenant.

CREATE TABLE quote_counters (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id),
    last_number  bigint NOT NULL CHECK (last_number >= 1)
);

CREATE TABLE quotes (
    tenant_id             uuid NOT NULL REFERENCES tenants (id),
    id                    uuid NOT NULL,
    number                bigint NOT NULL CHECK (number >= 1),
    reference             text NOT NULL,
    -- The caller's retry key and the SHA-256 of the request it came with.
    idempotency_key       text NOT NULL CHECK (idempotency_key ~ '^[!-~]{1,200}$'),
    request_sha256        bytea NOT NULL CHECK (octet_length(request_sha256) = 32),
    document              text NOT NULL,  -- canonical JSON of the draft, without its dates
    totals                text NOT NULL,  -- canonical JSON of the computed totals
    valid_until           date NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    -- The conversion, written once.
    converted_invoice_id  uuid,
    conversion_key        text CHECK (conversion_key ~ '^[!-~]{1,200}$'),
    conversion_sha256     bytea CHECK (octet_length(conversion_sha256) = 32),
    converted_at          timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, number),
    UNIQUE (tenant_id, reference),
    UNIQUE (tenant_id, idempotency_key),
    UNIQUE (tenant_id, converted_invoice_id),  -- one invoice comes from one quote at most
    FOREIGN KEY (tenant_id, converted_invoice_id) REFERENCES invoices (tenant_id, id),
    CHECK (reference = 'D-' || CASE WHEN number < 1000000 THEN lpad(number::text, 6, '0')
                                    ELSE number::text END),
    CHECK ((converted_invoice_id IS NULL) = (conversion_key IS NULL)
           AND (converted_invoice_id IS NULL) = (conversion_sha256 IS NULL)
           AND (converted_invoice_id IS NULL) = (converted_at IS NULL))
);

ALTER TABLE quote_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE quote_counters FORCE ROW LEVEL SECURITY;
ALTER TABLE quotes ENABLE ROW LEVEL SECURITY;
ALTER TABLE quotes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON quote_counters
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY tenant_isolation ON quotes
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION quote_number_next() RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    tenant uuid := app_current_tenant();
    given bigint;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'quote_number_next: no tenant' USING ERRCODE = '42501';
    END IF;
    INSERT INTO quote_counters AS c (tenant_id, last_number) VALUES (tenant, 1)
        ON CONFLICT (tenant_id) DO UPDATE SET last_number = c.last_number + 1
        RETURNING c.last_number INTO given;
    RETURN given;
END
$$;
REVOKE ALL ON FUNCTION quote_number_next() FROM PUBLIC;

-- At commit: the counter's last number is a quote.
CREATE FUNCTION quote_counter_check_no_gap() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM quotes q WHERE q.tenant_id = NEW.tenant_id
                   AND q.number = NEW.last_number) THEN
        RAISE EXCEPTION 'quote_counters: number % was given to no quote', NEW.last_number
            USING ERRCODE = 'EQ001';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER quote_counters_no_gap AFTER INSERT OR UPDATE ON quote_counters
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION quote_counter_check_no_gap();
CREATE TRIGGER quote_counters_no_delete BEFORE DELETE OR TRUNCATE ON quote_counters
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- On insert: the number is the one the counter just gave; the engine's clock
-- stamps the quote; a quote is born unconverted.
CREATE FUNCTION quote_check_number() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM quote_counters c WHERE c.tenant_id = NEW.tenant_id
                   AND c.last_number = NEW.number) THEN
        RAISE EXCEPTION 'quotes: % is not the number the counter just gave', NEW.number
            USING ERRCODE = 'EQ002';
    END IF;
    NEW.created_at := now();
    NEW.converted_invoice_id := NULL;
    NEW.conversion_key := NULL;
    NEW.conversion_sha256 := NULL;
    NEW.converted_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER quote_check_number BEFORE INSERT ON quotes
    FOR EACH ROW EXECUTE FUNCTION quote_check_number();

-- On update: only the conversion, once, and only to an invoice (380) the
-- tenant can see (the composite foreign key already keeps it in the tenant).
CREATE FUNCTION quote_frozen() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
BEGIN
    IF (to_jsonb(NEW) - 'converted_invoice_id' - 'conversion_key' - 'conversion_sha256'
            - 'converted_at')
       <> (to_jsonb(OLD) - 'converted_invoice_id' - 'conversion_key' - 'conversion_sha256'
            - 'converted_at')
       OR OLD.converted_invoice_id IS NOT NULL OR NEW.converted_invoice_id IS NULL THEN
        RAISE EXCEPTION 'quotes: a quote is never changed (its conversion: once)'
            USING ERRCODE = 'EQ003';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = NEW.tenant_id
                   AND i.id = NEW.converted_invoice_id AND i.type_code = '380') THEN
        RAISE EXCEPTION 'quotes: a quote becomes an invoice (380) of its own tenant'
            USING ERRCODE = 'EQ004';
    END IF;
    NEW.converted_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER quote_frozen BEFORE UPDATE ON quotes
    FOR EACH ROW EXECUTE FUNCTION quote_frozen();
CREATE TRIGGER quote_no_delete BEFORE DELETE OR TRUNCATE ON quotes
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

GRANT SELECT ON quote_counters TO {{app_role}};
GRANT SELECT, INSERT ON quotes TO {{app_role}};
GRANT UPDATE (converted_invoice_id, conversion_key, conversion_sha256) ON quotes TO {{app_role}};
GRANT EXECUTE ON FUNCTION quote_number_next() TO {{app_role}};
