-- Issued invoices and credit notes, numbered per tenant and series with no gap.
--
-- Numbering: invoice_series holds the last number given in each series. The
-- app role moves it only through invoice_number_next(), which locks the row
-- (one tenant's issuing in one series serialises; other series and tenants
-- run in parallel) and returns the next number. Whatever allocates a number
-- must insert that invoice in the same transaction: a deferred check at
-- commit refuses a series whose last number has no invoice (no gap, even from
-- buggy code), and an invoice whose number is not its series' last one.
-- A transaction that fails after allocating rolls the number back with it.
--
-- An issued invoice is never edited: every column is frozen except the
-- archive receipt, which is written once (NULL to a value). Nobody deletes or
-- truncates, the table owner included. Corrections are credit notes.

CREATE TABLE invoice_series (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    series       text NOT NULL CHECK (series ~ '^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$'),
    last_number  bigint NOT NULL CHECK (last_number >= 1),
    PRIMARY KEY (tenant_id, series)
);

CREATE TABLE invoices (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    id               uuid NOT NULL,
    series           text NOT NULL,
    number           bigint NOT NULL CHECK (number >= 1),
    invoice_number   text NOT NULL CHECK (char_length(invoice_number) BETWEEN 1 AND 40),
    type_code        text NOT NULL CHECK (type_code IN ('380', '381')),
    preceding_id     uuid,
    issue_date       date NOT NULL,
    -- The caller's retry key and the SHA-256 of the request it came with:
    -- the same key with another request is a conflict, never a second invoice.
    idempotency_key  text NOT NULL CHECK (idempotency_key ~ '^[!-~]{1,200}$'),
    request_sha256   bytea NOT NULL CHECK (octet_length(request_sha256) = 32),
    document         text NOT NULL,   -- canonical JSON (RFC 8785) of the validated invoice
    totals           text NOT NULL,   -- canonical JSON of the computed totals
    pdf_sha256       bytea NOT NULL CHECK (octet_length(pdf_sha256) = 32),
    xml_sha256       bytea NOT NULL CHECK (octet_length(xml_sha256) = 32),
    ledger_seq       bigint NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    -- The archive receipt, written once after the Object Lock put.
    archived_at      timestamptz,
    archive          text,            -- canonical JSON: keys, version ids, retain-until
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, series, number),
    UNIQUE (tenant_id, invoice_number),
    UNIQUE (tenant_id, idempotency_key),
    FOREIGN KEY (tenant_id, series) REFERENCES invoice_series (tenant_id, series),
    FOREIGN KEY (tenant_id, preceding_id) REFERENCES invoices (tenant_id, id),
    FOREIGN KEY (tenant_id, ledger_seq) REFERENCES ledger_entries (tenant_id, seq),
    CHECK ((type_code = '381') = (preceding_id IS NOT NULL)),
    CHECK ((archived_at IS NULL) = (archive IS NULL))
);

-- The rendered documents between issuing and archiving: a retry after a crash
-- archives exactly the bytes whose hashes the ledger holds. Deleted only once
-- the invoice's archive receipt is written.
CREATE TABLE invoice_documents (
    tenant_id   uuid NOT NULL,
    invoice_id  uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('pdf', 'xml')),
    content     bytea NOT NULL,
    PRIMARY KEY (tenant_id, invoice_id, kind),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id)
);

ALTER TABLE invoice_series ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_series FORCE ROW LEVEL SECURITY;
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
ALTER TABLE invoice_documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_documents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoice_series
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY tenant_isolation ON invoices
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());
CREATE POLICY tenant_isolation ON invoice_documents
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION invoice_number_next(p_series text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    tenant uuid := app_current_tenant();
    given bigint;
BEGIN
    IF tenant IS NULL THEN
        RAISE EXCEPTION 'invoice_number_next: no tenant' USING ERRCODE = '42501';
    END IF;
    INSERT INTO invoice_series AS s (tenant_id, series, last_number)
        VALUES (tenant, p_series, 1)
        ON CONFLICT (tenant_id, series) DO UPDATE SET last_number = s.last_number + 1
        RETURNING s.last_number INTO given;
    RETURN given;
END
$$;
REVOKE ALL ON FUNCTION invoice_number_next(text) FROM PUBLIC;

-- At commit: the series' last number is an invoice of that series.
CREATE FUNCTION invoice_series_check_no_gap() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = NEW.tenant_id
                   AND i.series = NEW.series AND i.number = NEW.last_number) THEN
        RAISE EXCEPTION 'invoice_series: number % of series % was given to no invoice',
            NEW.last_number, NEW.series USING ERRCODE = 'EI001';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER invoice_series_no_gap AFTER INSERT OR UPDATE ON invoice_series
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION invoice_series_check_no_gap();
CREATE TRIGGER invoice_series_no_delete BEFORE DELETE OR TRUNCATE ON invoice_series
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

-- On insert: the number is the one the series just gave (so numbers follow
-- allocation order; with the unique key, no duplicate and no skip), and the
-- issue date is not before the previous number's (chronological numbering,
-- CGI art. 242 nonies A).
CREATE FUNCTION invoice_check_number() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM invoice_series s WHERE s.tenant_id = NEW.tenant_id
                   AND s.series = NEW.series AND s.last_number = NEW.number) THEN
        RAISE EXCEPTION 'invoices: % is not the number series % just gave',
            NEW.number, NEW.series USING ERRCODE = 'EI002';
    END IF;
    IF EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = NEW.tenant_id
               AND i.series = NEW.series AND i.number = NEW.number - 1
               AND i.issue_date > NEW.issue_date) THEN
        RAISE EXCEPTION 'invoices: % is dated before the previous number of series %',
            NEW.number, NEW.series USING ERRCODE = 'EI005';
    END IF;
    NEW.issued_at := now();
    NEW.archived_at := NULL;
    NEW.archive := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_check_number BEFORE INSERT ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoice_check_number();

CREATE FUNCTION invoice_frozen() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF (to_jsonb(NEW) - 'archived_at' - 'archive') <> (to_jsonb(OLD) - 'archived_at' - 'archive')
       OR OLD.archive IS NOT NULL OR NEW.archive IS NULL THEN
        RAISE EXCEPTION 'invoices: an issued invoice is never changed (archive receipt: once)'
            USING ERRCODE = 'EI003';
    END IF;
    NEW.archived_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_frozen BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoice_frozen();
CREATE TRIGGER invoice_no_delete BEFORE DELETE OR TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

CREATE FUNCTION invoice_documents_check_delete() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = OLD.tenant_id
                   AND i.id = OLD.invoice_id AND i.archive IS NOT NULL) THEN
        RAISE EXCEPTION 'invoice_documents: kept until the invoice is archived'
            USING ERRCODE = 'EI004';
    END IF;
    RETURN OLD;
END
$$;
CREATE TRIGGER invoice_documents_check_delete BEFORE DELETE ON invoice_documents
    FOR EACH ROW EXECUTE FUNCTION invoice_documents_check_delete();
CREATE TRIGGER invoice_documents_no_update BEFORE UPDATE OR TRUNCATE ON invoice_documents
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

GRANT SELECT ON invoice_series TO {{app_role}};
GRANT SELECT, INSERT ON invoices TO {{app_role}};
GRANT UPDATE (archive) ON invoices TO {{app_role}};
GRANT SELECT, INSERT, DELETE ON invoice_documents TO {{app_role}};
GRANT EXECUTE ON FUNCTION invoice_number_next(text) TO {{app_role}};
