-- Fiscal ledger entries are written only with the issued invoice that records
-- them, and the service's own kinds are the service's.
--
-- The application role is one role: the engine cannot tell the issuing use
-- case from the generic append-ledger queue (a session setting or a function
-- one path calls, the other path could set or call too). What it can check is
-- the entry itself:
--
-- 1. an `invoice.issued` or `credit_note.issued` entry must, by the end of its
--    transaction, be recorded by exactly one issued invoice row (invoices.ledger_seq)
--    whose number (given by its gapless series), type, date, totals and document
--    hashes are the ones the entry carries (a deferred constraint trigger,
--    SQLSTATE EL004 / EL005). A forged money entry therefore needs a real,
--    numbered invoice with the same totals: it can no longer be a ledger line
--    alone that closings would sum.
-- 2. an invoice row records an entry of its own kind (380: invoice.issued,
--    381: credit_note.issued), and no other invoice records the same entry.
-- 3. a kind in the service's namespaces (invoice., credit_note., quote.,
--    closing., payment.) is one of the kinds the service writes
--    (chalicelib/domain/kinds.py, SERVICE_KINDS): nobody invents
--    `invoice.cancelled` or `payment.received` before their use case exists.
--
-- And 0020's envelope check is validated here, in its own transaction.

-- 0020's constraint, validated over the existing chain (SHARE UPDATE EXCLUSIVE:
-- appends go on). A chain that already holds a malformed entry (planted by a
-- superuser) cannot be validated: the constraint then stays NOT VALID (still
-- checking every new row), the migration goes on, and sealing that tenant
-- answers 409 naming the entry.
DO $$
BEGIN
    ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_envelope;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'ledger_entries_envelope left NOT VALID: an existing entry is malformed';
END
$$;

CREATE FUNCTION ledger_check_fiscal_entry() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
DECLARE
    inv record;
    expected text;
    data jsonb := NEW.payload::jsonb -> 'data';
BEGIN
    SELECT i.id, i.series, i.number, i.invoice_number, i.type_code, i.preceding_id,
           i.issue_date, i.totals, i.pdf_sha256, i.xml_sha256
      INTO inv FROM invoices i WHERE i.tenant_id = NEW.tenant_id AND i.ledger_seq = NEW.seq;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger: entry % (%) is recorded by no issued invoice', NEW.seq, NEW.kind
            USING ERRCODE = 'EL004';
    END IF;
    expected := CASE inv.type_code WHEN '381' THEN 'credit_note.issued' ELSE 'invoice.issued' END;
    IF NEW.kind IS DISTINCT FROM expected
       OR data ->> 'invoice_id' IS DISTINCT FROM inv.id::text
       OR data ->> 'invoice_number' IS DISTINCT FROM inv.invoice_number
       OR data ->> 'series' IS DISTINCT FROM inv.series
       OR data -> 'number' IS DISTINCT FROM to_jsonb(inv.number)
       OR data ->> 'type_code' IS DISTINCT FROM inv.type_code
       OR data ->> 'issue_date' IS DISTINCT FROM to_char(inv.issue_date, 'YYYY-MM-DD')
       OR data -> 'totals' IS DISTINCT FROM inv.totals::jsonb
       OR data ->> 'pdf_sha256' IS DISTINCT FROM encode(inv.pdf_sha256, 'hex')
       OR data ->> 'xml_sha256' IS DISTINCT FROM encode(inv.xml_sha256, 'hex')
       OR data ->> 'credited_invoice_number' IS DISTINCT FROM (
            SELECT p.invoice_number FROM invoices p
             WHERE p.tenant_id = NEW.tenant_id AND p.id = inv.preceding_id) THEN
        RAISE EXCEPTION 'ledger: entry % (%) does not carry its invoice''s values', NEW.seq,
            NEW.kind USING ERRCODE = 'EL005';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_fiscal_backed AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.kind IN ('invoice.issued', 'credit_note.issued'))
    EXECUTE FUNCTION ledger_check_fiscal_entry();

CREATE UNIQUE INDEX invoices_one_per_entry ON invoices (tenant_id, ledger_seq);

CREATE FUNCTION invoice_check_entry_kind() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_temp
    AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_entries e
                    WHERE e.tenant_id = NEW.tenant_id AND e.seq = NEW.ledger_seq
                      AND e.kind = (CASE NEW.type_code WHEN '381' THEN 'credit_note.issued'
                                                       ELSE 'invoice.issued' END)) THEN
        RAISE EXCEPTION 'invoices: entry % is not this invoice''s % entry', NEW.ledger_seq,
            NEW.type_code USING ERRCODE = 'EI006';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER invoice_check_entry_kind BEFORE INSERT ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoice_check_entry_kind();

-- Validated like the envelope check: a chain that already holds an invented
-- kind keeps it (entries are never changed) and the check covers new rows.
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_service_kinds
    CHECK (kind !~ '^(invoice|credit_note|quote|closing|payment)\.'
           OR kind IN ('invoice.issued', 'credit_note.issued', 'invoice.archived',
                       'quote.created', 'quote.converted', 'closing.sealed')) NOT VALID;
DO $$
BEGIN
    ALTER TABLE ledger_entries VALIDATE CONSTRAINT ledger_entries_service_kinds;
EXCEPTION WHEN check_violation THEN
    RAISE WARNING 'ledger_entries_service_kinds left NOT VALID: an entry has an invented kind';
END
$$;
