-- The deposit outbox: one row per issued invoice, written in the transaction that
-- writes the invoice (PostgresInvoices.add), so there is never an invoice without its
-- row nor a row without its invoice. The sender (next step) moves it along:
--   pending -> looking_up -> deposited (flow id, acknowledgement)
--                         -> recipient_unknown | refused (reason codes)
-- with attempts and next_attempt_at for its back-off.
--
-- What must never change is frozen by the engine: the tenant, the invoice, the
-- tracking id (the invoice id: what makes a repeated deposit recognisable) and the
-- SHA-256 of the archived Factur-X to deposit; a flow id once recorded; a deposited
-- row's state. Rows are never deleted.

CREATE TABLE pa_deposits (
    tenant_id       uuid NOT NULL,
    invoice_id      uuid NOT NULL,
    tracking_id     text NOT NULL CHECK (length(tracking_id) BETWEEN 1 AND 36),
    sha256          bytea NOT NULL CHECK (length(sha256) = 32),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN
                        ('pending', 'looking_up', 'deposited', 'recipient_unknown', 'refused')),
    processing_rule text CHECK (processing_rule IN ('B2B', 'B2BInt', 'B2C')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    flow_id         text CHECK (length(flow_id) BETWEEN 1 AND 100),
    ack_status      text CHECK (ack_status IN ('Pending', 'Ok', 'Error')),
    reason_codes    text[] NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, invoice_id),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id),
    CHECK (tracking_id = invoice_id::text),
    CHECK (state <> 'deposited' OR flow_id IS NOT NULL)
);
CREATE INDEX pa_deposits_due ON pa_deposits (next_attempt_at)
    WHERE state IN ('pending', 'looking_up');

ALTER TABLE pa_deposits ENABLE ROW LEVEL SECURITY;
ALTER TABLE pa_deposits FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON pa_deposits
    USING (tenant_id = app_current_tenant()) WITH CHECK (tenant_id = app_current_tenant());

CREATE FUNCTION pa_deposit_frozen() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    IF NEW.tenant_id <> OLD.tenant_id OR NEW.invoice_id <> OLD.invoice_id
       OR NEW.tracking_id <> OLD.tracking_id OR NEW.sha256 <> OLD.sha256
       OR (OLD.flow_id IS NOT NULL AND NEW.flow_id IS DISTINCT FROM OLD.flow_id)
       OR (OLD.state = 'deposited' AND NEW.state <> 'deposited') THEN
        RAISE EXCEPTION 'pa_deposits: the invoice, tracking id, sha256, flow id and a '
            'deposited state never change' USING ERRCODE = 'EI007';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER pa_deposit_frozen BEFORE UPDATE ON pa_deposits
    FOR EACH ROW EXECUTE FUNCTION pa_deposit_frozen();
CREATE TRIGGER pa_deposit_no_delete BEFORE DELETE OR TRUNCATE ON pa_deposits
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_mutation();

GRANT SELECT, INSERT ON pa_deposits TO {{app_role}};
GRANT UPDATE (state, processing_rule, attempts, next_attempt_at, flow_id, ack_status,
              reason_codes) ON pa_deposits TO {{app_role}};
