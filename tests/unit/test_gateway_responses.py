"""The headers API Gateway adds to its own answers are the app's own."""

from __future__ import annotations

import json

from chalicelib.entrypoints.guard import SECURITY_HEADERS
from infra.aws.gateway_responses import TARGET, render


def test_checked_in_template_is_what_the_generator_writes() -> None:
    assert TARGET.read_text() == render(), "run: python -m infra.aws.gateway_responses"


def test_every_gateway_error_carries_every_security_header() -> None:
    resources = json.loads(TARGET.read_text())["Resources"]
    kinds = {r["Properties"]["ResponseType"]: r["Properties"] for r in resources.values()}
    assert set(kinds) == {"DEFAULT_4XX", "DEFAULT_5XX"}
    for properties in kinds.values():
        assert properties["RestApiId"] == {"Ref": "RestAPI"}
        sent = {name.removeprefix("gatewayresponse.header."): value
                for name, value in properties["ResponseParameters"].items()}
        assert sent == {name: f"'{value}'" for name, value in SECURITY_HEADERS.items()}
