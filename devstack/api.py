"""The local HTTP API server: Chalice's own local server, sockets without Nagle,
request lines logged without their query string.

chalice local writes a response's headers and body in two sends; with Nagle on,
the body waits for the client's delayed ACK (about 40 ms on Linux) on every
keep-alive request. No deployed gateway behaves so, so the local stack does not.

The standard library's server prints each request line as sent, query string
included: a credential put in a URL (refused by the app with a 400) would be
printed in clear. Every line it logs loses its query strings and anything
shaped like an API key first.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, LocalDevServer, create_local_server

# A query string runs to the first space or quote; an API key (eik_...) is
# redacted wherever it is, e.g. in a malformed request line quoted by an error.
_QUERY = re.compile(r"\?[^\s\"']*")
_API_KEY = re.compile(r"eik_[^\s\"']*")
LISTEN_BACKLOG = 128


def redacted(line: str) -> str:
    """`line` without its query strings or anything shaped like an API key."""
    return _API_KEY.sub("[redacted]", _QUERY.sub("?[redacted]", line))


class NoDelayRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler with TCP_NODELAY on the connection, logging
    request lines without their query string."""

    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        super().log_message("%s", redacted(format % args))


def local_api_server(app: Any, config: Config, host: str, port: int,
                     handler: type[ChaliceRequestHandler] = NoDelayRequestHandler
                     ) -> LocalDevServer:
    server = create_local_server(app, config, host, port)
    server.server.RequestHandlerClass = functools.partial(
        handler, app_object=server.app_object, config=config)
    # socketserver listens with a backlog of 5: a sixth client connecting at
    # once (the fault suite runs 16) may be reset. Listening again resizes it.
    server.server.socket.listen(LISTEN_BACKLOG)
    return server
