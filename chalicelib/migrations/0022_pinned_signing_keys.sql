-- Closing and witness signatures are checked only against public keys pinned
-- outside the database (the signer's own and EINVOICE_CLOSING_PUBLIC_KEYS:
-- chalicelib/runtime.py pinned_keys). A key the application could add here
-- would otherwise let a compromised application sign closings of its own.
--
-- The application role can no longer add a signing key; the table keeps the
-- keys recorded before, as history. A closing no longer has to name a key of
-- this table (the application cannot register its new key after a rotation);
-- its key_id is still bound to its signed text and its ledger entry by
-- closing_check_insert, and verification refuses a key that is not pinned.

REVOKE INSERT ON signing_keys FROM {{app_role}};
ALTER TABLE closings DROP CONSTRAINT closings_key_id_fkey;
ALTER TABLE closings ADD CONSTRAINT closings_key_id_form
    CHECK (key_id ~ '^ed25519:[0-9a-f]{32}$');
