-- Personal data at rest (DESIGN §3 "Encryption at rest"): an invoice's or a
-- quote's document (the validated draft: the seller's IBAN, a consumer buyer's
-- name and address) and the staged PDF and XML are stored sealed with
-- AES-256-GCM under the tenant's data key, each value bound to its tenant,
-- table, column and row (chalicelib/domain/encryption.py, format 1:
-- 0x01 || key version (4) || nonce (12) || ciphertext || tag (16)).
--
-- The engine refuses a new row that carries them in clear, whoever inserts it.
-- Rows inserted before this migration are left as they were (read as such).

ALTER TABLE invoices ADD COLUMN document_sealed bytea;
ALTER TABLE invoices ALTER COLUMN document DROP NOT NULL;
ALTER TABLE quotes ADD COLUMN document_sealed bytea;
ALTER TABLE quotes ALTER COLUMN document DROP NOT NULL;

-- A value in the sealed format: its first byte, and longer than header + tag.
CREATE FUNCTION is_sealed_value(p bytea) RETURNS boolean
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT p IS NOT NULL AND octet_length(p) > 33 AND get_byte(p, 0) = 1 $$;

CREATE FUNCTION document_sealed_on_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NEW.document IS NOT NULL OR NOT is_sealed_value(NEW.document_sealed) THEN
        RAISE EXCEPTION '%: the document holds personal data and is stored sealed only',
            TG_TABLE_NAME USING ERRCODE = 'ES001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoices_document_sealed BEFORE INSERT ON invoices
    FOR EACH ROW EXECUTE FUNCTION document_sealed_on_insert();
CREATE TRIGGER quotes_document_sealed BEFORE INSERT ON quotes
    FOR EACH ROW EXECUTE FUNCTION document_sealed_on_insert();

CREATE FUNCTION staged_document_sealed_on_insert() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT is_sealed_value(NEW.content) THEN
        RAISE EXCEPTION 'invoice_documents: a staged document is stored sealed only'
            USING ERRCODE = 'ES001';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_documents_sealed BEFORE INSERT ON invoice_documents
    FOR EACH ROW EXECUTE FUNCTION staged_document_sealed_on_insert();
