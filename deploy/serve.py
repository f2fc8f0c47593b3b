"""Serves one Scaleway handler over HTTP, called as Scaleway's runtime calls it.

    python serve.py functions/conformance_check.handle      # port: $PORT (8080)

Copied to the root of the packages that run as a container (the conformance
check on Scaleway: docs/deploy/packaging.md), and used by the tests to serve
a package from a clean interpreter. Standard library only: it runs from the
unzipped package with nothing installed.

Like the runtime: the handler's folder is appended to sys.path and its file
imported by its bare name; the event carries httpMethod, path, headers (one
string each), queryStringParameters, body (text, or base64 with
isBase64Encoded when the bytes are not UTF-8) and requestContext; the answer's
statusCode, headers (a string or a list of strings each), body and
isBase64Encoded make the response. A body over 6 MiB is refused 413 (the
platform's payload limit). One request at a time, as a function instance.

With SERVE_AUTH_TOKEN set, a request whose X-Auth-Token differs is refused 401
before the handler runs, as the platform refuses a private function's caller;
on Scaleway the platform checks the token itself: leave it unset there.
"""

from __future__ import annotations

import base64
import hmac
import importlib
import json
import os
import sys
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MAX_BODY = 6 * 1024 * 1024

Handler = Callable[[dict[str, Any], Any], Any]


def load(handler_path: str, root: Path) -> Handler:
    """`path/file.attr` as the runtime loads it, from the package at `root`."""
    file_part, _, attribute = handler_path.rpartition(".")
    folder, _, module_name = file_part.rpartition("/")
    sys.path.append(str(root / folder))
    module = importlib.import_module(module_name)
    found: Handler = getattr(module, attribute)
    return found


def event_of(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    parts = urlsplit(target)
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, value)
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    request_id = headers.get("X-Request-Id") or str(uuid.uuid4())
    return {"httpMethod": method, "path": parts.path or "/",
            "headers": {**headers, "X-Request-Id": request_id},
            "queryStringParameters": query, "body": text, "isBase64Encoded": encoded,
            "requestContext": {"httpMethod": method, "requestId": request_id,
                               "resourcePath": "", "stage": ""}}


def serve(handler: Handler, port: int, token: str | None,
          host: str = "0.0.0.0") -> HTTPServer:  # a container listens on all addresses
    """A server answering every request through `handler` (not started)."""

    class Request(BaseHTTPRequestHandler):
        timeout = 60
        server_version = "serve"
        sys_version = ""

        def do_request(self) -> None:
            if token is not None and not hmac.compare_digest(
                    self.headers.get("X-Auth-Token", "").encode(), token.encode()):
                self._answer(401, {"Content-Type": "application/json"},
                             json.dumps({"error": "invalid token"}).encode())
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._answer(413, {"Content-Type": "application/json"},
                             json.dumps({"error": "payload too large"}).encode())
                self.close_connection = True
                return
            body = self.rfile.read(length) if length else b""
            event = event_of(self.command, self.path, dict(self.headers.items()), body)
            try:
                answer = handler(event, {"functionName": "serve", "memoryLimitInMb": 0})
            except Exception:  # noqa: BLE001 - the platform answers 500 for a crashed handler
                self._answer(500, {"Content-Type": "text/plain"}, b"handler failed")
                return
            self._respond(answer)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_request

        def _respond(self, answer: Any) -> None:
            if not isinstance(answer, dict):
                self._answer(200, {"Content-Type": "application/json"},
                             json.dumps(answer).encode())
                return
            raw = answer.get("body") or ""
            data = base64.b64decode(raw) if answer.get("isBase64Encoded") \
                else str(raw).encode("utf-8")
            self._answer(int(answer.get("statusCode", 200)), answer.get("headers") or {}, data)

        def _answer(self, status: int, headers: dict[str, Any], data: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                for one in value if isinstance(value, list) else [value]:
                    self.send_header(str(name), str(one))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the handler logs what matters; request lines would carry paths

    return HTTPServer((host, port), Request)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python serve.py path/file.handler", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent
    handler = load(argv[0], root)
    server = serve(handler, int(os.environ.get("PORT", "8080")),
                   os.environ.get("SERVE_AUTH_TOKEN") or None,
                   os.environ.get("SERVE_HOST", "0.0.0.0"))
    print(f"serving {argv[0]} on port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
