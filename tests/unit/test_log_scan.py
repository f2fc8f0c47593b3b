"""The end-of-run log scan (tests/conftest.py) finds what it must find."""

from __future__ import annotations

from tests.conftest import find_leaks


def test_the_scan_finds_planted_leaks_and_passes_redacted_lines() -> None:
    secrets = {"correct horse battery", "eik_abcdefgh"}
    lines = ['{"message": "login", "password": "[REDACTED]"}',
             '{"message": "from ***@example.fr", "cookie": "session=[REDACTED]"}',
             '{"message": "oops correct horse battery"}',
             '{"message": "user owner.1234@example.fr"}',
             '{"message": "Cookie: session=abc123"}',
             '{"message": "key eik_zzzz"}']
    assert find_leaks(lines, secrets) == lines[2:]
