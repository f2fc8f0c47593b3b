"""Audit bundle commands.

    python -m chalicelib.audit verify-bundle PATH [--trusted-key KEY ...] [--progress]
        PATH: a bundle folder or .zip. Exit 0 and "OK: N entries, M closings,
        K proofs; head <hex>" on stdout, or exit 1 and "FAIL: <problem>" on stderr.
        --trusted-key (ed25519:<32 hex> or the raw public key in hex, repeatable):
        every closing must be signed by one of these, not merely by a key of keys.json.
        --tsa-cert PEM (repeatable): pins the RFC 3161 TSA (its certificate, or the CA
        that issued it); without it a token is checked with the certificate it carries.
        After OK, lines say what stayed unverified (NOT VERIFIED: Bitcoin block headers).
        --max-line-bytes (1 MiB), --max-member-bytes (16 GiB): input bounds; a longer
        line, or a file or .zip member declared or read larger, is a FAIL.
    python -m chalicelib.audit export-audit-bundle --tenant UUID OUT [--zip]
        against the database of the EINVOICE_* environment (chalicelib.runtime).

verify-bundle imports nothing beyond the standard library, `cryptography`,
chalicelib/audit/anchors.py and chalicelib/domain/merkle.py, canonical_json.py and
closing_totals.py (a test checks it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _verify(args: argparse.Namespace) -> int:
    from chalicelib.audit.anchors import load_certificates
    from chalicelib.audit.verify import Report, trusted_key_ids, verify_bundle

    try:
        trusted = trusted_key_ids(args.trusted_key) if args.trusted_key else None
    except ValueError as exc:
        print(f"FAIL: --trusted-key {exc}", file=sys.stderr)
        return 2
    try:
        pinned = load_certificates([Path(p) for p in args.tsa_cert])
    except ValueError as exc:
        print(f"FAIL: --tsa-cert {exc}", file=sys.stderr)
        return 2
    try:
        report = verify_bundle(Path(args.path), progress=args.progress or sys.stderr.isatty(),
                               trusted_keys=trusted, max_line_bytes=args.max_line_bytes,
                               max_member_bytes=args.max_member_bytes,
                               tsa_certificates=pinned)
    except Exception as exc:  # noqa: BLE001 - an auditor gets a FAIL line, never a traceback
        report = Report(False, f"{args.path}: cannot be verified ({type(exc).__name__}: {exc})")
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _export(args: argparse.Namespace) -> int:
    from uuid import UUID

    from chalicelib.audit.bundle import export_from_database
    from chalicelib.runtime import database, pinned_keys

    manifest = export_from_database(UUID(args.tenant), database(), Path(args.out),
                                    keys=pinned_keys(), zip=args.zip)
    print(f"exported {manifest['entries']} entries and {manifest['closings']} closings of "
          f"tenant {manifest['tenant_id']} to {args.out} (head {manifest['head']['hash']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    from chalicelib.audit.verify import MAX_LINE_BYTES, MAX_MEMBER_BYTES

    parser = argparse.ArgumentParser(prog="python -m chalicelib.audit")
    commands = parser.add_subparsers(dest="command", required=True)
    verify = commands.add_parser("verify-bundle", help="check an audit bundle offline")
    verify.add_argument("path", help="a bundle folder or .zip")
    verify.add_argument("--trusted-key", action="append", default=[],
                        help="a key the closings may be signed with (repeatable)")
    verify.add_argument("--tsa-cert", action="append", default=[], metavar="PEM",
                        help="a TSA certificate (or its issuing CA) to pin (repeatable)")
    verify.add_argument("--max-line-bytes", type=int, default=MAX_LINE_BYTES,
                        help="the longest line (and manifest.json, keys.json) accepted")
    verify.add_argument("--max-member-bytes", type=int, default=MAX_MEMBER_BYTES,
                        help="the largest file or .zip member accepted (declared or read)")
    verify.add_argument("--progress", action="store_true",
                        help="a progress bar on stderr even when it is not a terminal")
    verify.set_defaults(func=_verify)
    export = commands.add_parser("export-audit-bundle", help="export a tenant's bundle")
    export.add_argument("--tenant", required=True, help="the tenant's id (UUID)")
    export.add_argument("out", help="the folder to create (or the .zip file with --zip)")
    export.add_argument("--zip", action="store_true", help="write one .zip file")
    export.set_defaults(func=_export)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
