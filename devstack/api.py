"""The local HTTP API server: Chalice's own local server, sockets without Nagle.

chalice local writes a response's headers and body in two sends; with Nagle on,
the body waits for the client's delayed ACK (about 40 ms on Linux) on every
keep-alive request. No deployed gateway behaves so, so the local stack does not.
"""

from __future__ import annotations

import functools
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, create_local_server


class NoDelayRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler with TCP_NODELAY on the connection."""

    disable_nagle_algorithm = True


def local_api_server(app: Any, config: Config, host: str, port: int,
                     handler: type[ChaliceRequestHandler] = NoDelayRequestHandler
                     ) -> LocalDevServer:
    server = create_local_server(app, config, host, port)
    server.server.RequestHandlerClass = functools.partial(
        handler, app_object=server.app_object, config=config)
    return server
