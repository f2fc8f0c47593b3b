"""Audit bundles: a tenant's whole ledger, closings, keys and proofs in one folder
(`bundle.py`, which needs the database), and an offline verifier (`verify.py` and
`anchors.py`: standard library + `cryptography` + `chalicelib.domain` merkle,
canonical_json and closing_totals only).

    python -m chalicelib.audit verify-bundle PATH
    python -m chalicelib.audit export-audit-bundle --tenant UUID OUT [--zip]

Keep this file free of imports: the verifier's import path must stay light.
"""
