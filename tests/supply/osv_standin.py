"""A local stand-in for the OSV query API (POST /v1/query), answering from the
PyPA snapshot, so the live audit's whole path (pip-audit, its JSON, the exit
codes) runs against a real HTTP service on 127.0.0.1 without the internet."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from deploy.audit import Snapshot, affects


@contextmanager
def osv_standin(snapshot: Snapshot) -> Iterator[str]:
    """Serve the snapshot; yields the query URL to give pip-audit's --osv-url."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name, version = query["package"]["name"], query["version"]
            vulns = [{"id": a.id, "aliases": list(a.aliases), "summary": a.summary,
                      "affected": list(a.affected)}
                     for a in snapshot.by_package.get(name, []) if affects(a, name, version)]
            body = json.dumps({"vulns": vulns} if vulns else {}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()
