"""Writes gateway-responses.json: the security headers on the answers API
Gateway makes itself (unknown route, 403 from a missing authoriser, 413, 429,
5xx), which never reach the app's middleware.

A `chalice package --merge-template infra/aws/gateway-responses.json` fragment;
`RestAPI` is the logical id Chalice gives the API in its SAM template. The
headers come from the app's own table, so the two cannot drift (a test checks
the file is what this script writes).

    python -m infra.aws.gateway_responses   # rewrites the file
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.entrypoints.guard import SECURITY_HEADERS

TARGET = Path(__file__).with_name("gateway-responses.json")


def gateway_responses() -> dict[str, Any]:
    headers = {f"gatewayresponse.header.{name}": f"'{value}'"
               for name, value in sorted(SECURITY_HEADERS.items())}
    return {"Resources": {
        f"GatewayResponse{kind.title().replace('_', '')}": {
            "Type": "AWS::ApiGateway::GatewayResponse",
            "Properties": {"RestApiId": {"Ref": "RestAPI"}, "ResponseType": kind,
                           "ResponseParameters": headers}}
        for kind in ("DEFAULT_4XX", "DEFAULT_5XX")}}


def render() -> str:
    return json.dumps(gateway_responses(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
