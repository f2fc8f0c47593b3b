"""Writes openapi.json: the body of the REST API Terraform imports (api.tf).

Generated from app.py's own route table, so the gateway and the app cannot
drift (tests/infra/test_aws_terraform.py checks the file is what this writes):
every route and method goes to the api function through the Lambda proxy
integration, path parameters declared; the app's binary media types (with
application/pdf); the security headers on API Gateway's own answers, from
gateway_responses.py; and, per path, the CORS preflight API Gateway answers
itself, which Terraform keeps only when a frontend origin is configured.

Terraform replaces two placeholders: the api function's invoke ARN and the
frontend origin.

    python -m infra.aws.openapi   # rewrites the file
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from infra.aws.gateway_responses import gateway_responses

TARGET = Path(__file__).with_name("openapi.json")
API_INVOKE_ARN = "@@API_INVOKE_ARN@@"
FRONTEND_ORIGIN = "@@FRONTEND_ORIGIN@@"
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _proxy(view_name: str, parameters: list[str]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": view_name,
        "responses": {"default": {"description": "answered by the app"}},
        "x-amazon-apigateway-integration": {
            "type": "aws_proxy",
            "httpMethod": "POST",  # Lambda is always invoked with POST
            "uri": API_INVOKE_ARN,
            "passthroughBehavior": "when_no_match",
        },
    }
    if parameters:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in parameters]
    return operation


def _preflight(methods: list[str]) -> dict[str, Any]:
    """What API Gateway answers an OPTIONS request itself (a mock), with the
    headers of the app's CORS configuration for the configured origin."""
    from chalicelib.entrypoints.cors import frontend_cors

    cors = frontend_cors(FRONTEND_ORIGIN)
    if isinstance(cors, bool):  # only without an origin, and we pass one
        raise TypeError("frontend_cors gave no CORS configuration")
    headers = {"Access-Control-Allow-Methods": ",".join([*methods, "OPTIONS"]),
               **cors.get_access_control_headers()}
    return {
        "responses": {"200": {
            "description": "CORS preflight",
            "headers": {name: {"schema": {"type": "string"}} for name in sorted(headers)}}},
        "x-amazon-apigateway-integration": {
            "type": "mock",
            "requestTemplates": {"application/json": '{"statusCode": 200}'},
            "passthroughBehavior": "when_no_match",
            "responses": {"default": {
                "statusCode": "200",
                "responseParameters": {f"method.response.header.{name}": f"'{value}'"
                                       for name, value in sorted(headers.items())}}},
        },
    }


def _gateway_responses() -> dict[str, Any]:
    """gateway_responses.py's template, in the OpenAPI extension's shape."""
    resources = gateway_responses()["Resources"].values()
    return {r["Properties"]["ResponseType"]: {
        "responseParameters": r["Properties"]["ResponseParameters"]} for r in resources}


def openapi() -> dict[str, Any]:
    from app import app

    paths: dict[str, Any] = {}
    for path, views in sorted(app.routes.items()):
        if set(_PARAMETER.findall(path)) != {p for v in views.values() for p in v.view_args}:
            raise ValueError(f"{path}: path parameters and view arguments differ")
        item = {method.lower(): _proxy(entry.view_name, entry.view_args)
                for method, entry in sorted(views.items())}
        if "OPTIONS" not in views:
            item["options"] = _preflight(sorted(views))
        paths[path] = item
    return {
        "openapi": "3.0.1",
        "info": {"title": "einvoice", "version": "1"},
        "paths": paths,
        "x-amazon-apigateway-binary-media-types": list(app.api.binary_types),
        "x-amazon-apigateway-gateway-responses": _gateway_responses(),
    }


def render() -> str:
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
