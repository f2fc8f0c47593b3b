"""The service's side of the fault suite, in a process of its own, configured
by its environment (the fault stack's, never the test session's):

    python -m tests.faults.stackside serve PORT   the HTTP API (devstack's local
                                                  server) and the queue trigger
    python -m tests.faults.stackside settle       the archive sweep of the invoices
                                                  named on stdin, then a witness of
                                                  every chain's head (JSON on stdout)

Its own process, so the suite's faults (a restarted PostgreSQL, a suspended
moto) reach it only over the network, as they would reach a function, and its
schematron worker is a child of its own, for the suite to kill.
"""

from __future__ import annotations

import json
import sys
import threading


def serve(port: int) -> None:
    from chalice.config import Config

    import app as app_module
    from chalicelib.config import settings
    from devstack.api import local_api_server
    from devstack.dispatcher import QueueDispatcher

    server = local_api_server(app_module.app, Config.create(chalice_stage="dev",
                                                            app_name="einvoice"),
                              "127.0.0.1", port)
    stop = threading.Event()
    dispatcher = QueueDispatcher(app_module, settings())
    threading.Thread(target=dispatcher.run, args=(stop,), daemon=True).start()
    print("serving", flush=True)
    server.serve_forever()


def settle() -> None:
    """What the schedules do once the faults are over: the archive sweep's
    use case (archive_pending) for the unarchived invoices named on stdin as
    JSON [[tenant, invoice], ...] (the engine's own list waits 5 minutes, not
    the suite), and a witness of each chain's head (witness_owed, as the
    closings schedule does)."""
    from uuid import UUID

    from chalicelib import runtime
    from chalicelib.usecases.archive_invoice import archive_pending
    from chalicelib.usecases.witness import witness_owed

    pending = [(UUID(tenant), UUID(invoice)) for tenant, invoice in json.load(sys.stdin)]
    swept = archive_pending(pending, runtime.archive_ports()) if pending else {
        "archived": 0, "failed": 0}
    tenants = sorted({tenant for tenant, _ in pending} | set(runtime.tenants_to_seal()))
    for tenant in tenants:
        witness_owed(tenant, runtime.witness_ports())
    print(json.dumps({**swept, "pending": len(pending), "witnessed": len(tenants)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:] == ["settle"]:
        settle()
    else:
        raise SystemExit(__doc__)
