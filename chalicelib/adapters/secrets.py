"""AWS Secrets Manager: the value of a secret setting named by its
`<SETTING>_SECRET_ARN` (chalicelib/config.py), read once per container.

Imported only when such an ARN is set, so a cold start without one loads no
the AWS SDK. Credentials come from the default chain (the function's role); the
endpoint is AWS's in the secret's own region, or botocore's
AWS_ENDPOINT_URL_SECRETS_MANAGER (local stand-ins).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Protocol

from chalicelib.config import SECRET_ARN
from chalicelib.domain.errors import SecretUnavailable


class SecretsClient(Protocol):
    def get_secret_value(self, *, SecretId: str) -> Mapping[str, object]: ...


@lru_cache(maxsize=8)
def _client(region: str) -> SecretsClient:
    from botocore.config import Config

    from chalicelib.adapters.aws import sdk_client

    config = Config(region_name=region, connect_timeout=2, read_timeout=5,
                    retries={"max_attempts": 3, "mode": "standard"})
    client: SecretsClient = sdk_client("secretsmanager", config=config)
    return client


@lru_cache(maxsize=32)
def read_secret(arn: str) -> str:
    """The secret's current SecretString; SecretUnavailable (naming only the
    service's error code) if it cannot be read. Failures are not cached."""
    from botocore.exceptions import BotoCoreError, ClientError

    match = SECRET_ARN.fullmatch(arn)
    if match is None:
        raise ValueError("not a Secrets Manager secret ARN")
    try:
        answer = _client(match.group(1)).get_secret_value(SecretId=arn)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        raise SecretUnavailable(f"Secrets Manager GetSecretValue: {code}") from None
    except BotoCoreError as exc:  # unreachable, timed out, no credentials
        raise SecretUnavailable(f"Secrets Manager GetSecretValue: {type(exc).__name__}") from None
    value = answer.get("SecretString")
    if not isinstance(value, str) or not value:
        raise SecretUnavailable("Secrets Manager GetSecretValue: the secret holds no text "
                                "(a binary secret, or an empty one)")
    return value
