"""CORS for the Chalice app: the one configured frontend origin, or nothing.

Kept apart from http.py, which the plain function handlers import without Chalice.
"""

from __future__ import annotations

from chalice.app import CORSConfig

# Headers the frontend may send and read cross-origin, beyond Chalice's defaults.
CORS_REQUEST_HEADERS = ("X-CSRF-Token", "Idempotency-Key")
CORS_EXPOSED_HEADERS = ("X-Request-Id", "Retry-After")


def frontend_cors(origin: str | None) -> CORSConfig | bool:
    """With credentials (the session cookie) for that origin only; False when
    none is configured: no Access-Control-* header at all, so browsers allow
    same-origin calls only. Never a wildcard (settings refuse one)."""
    if origin is None:
        return False
    return CORSConfig(allow_origin=origin, allow_headers=list(CORS_REQUEST_HEADERS),
                      expose_headers=list(CORS_EXPOSED_HEADERS), max_age=600,
                      allow_credentials=True)
