"""The EINVOICE_* names the deployment sets beyond chalicelib/config.py's fields.

The deployment contract adds settings that other changes teach the code to
read (the CA of the database, the KMS key provider, secrets fetched by ARN, the
conformance check's address...). This is the one list of them, so whoever
merges can reconcile it with config.py: a name leaves this list once config.py
declares it as a field (tests/infra/test_aws_terraform.py accepts either).
"""

from __future__ import annotations

# Settings whose value is a secret: on AWS the environment never holds the
# value, only EINVOICE_<name>_SECRET_ARN, and the code reads the secret at cold
# start.
SECRET_SETTINGS = ("DB_APP_PASSWORD", "DB_OWNER_PASSWORD", "SMTP_PASSWORD", "CLOSING_KEY_PEM")

# Not secret, but too long for Lambda's 4 KB of environment (config.py
# LONG_SETTINGS): on AWS they come from a Secrets Manager secret the same way.
LONG_SETTINGS = ("DB_CA_PEM", "CLOSING_PUBLIC_KEYS")

# Secrets of the other providers (Scaleway), never set on AWS at all.
OTHER_PROVIDER_SECRETS = ("S3_SECRET_ACCESS_KEY", "SQS_SECRET_ACCESS_KEY", "SCW_SECRET_KEY",
                          "CONFORMANCE_CHECK_TOKEN")

NEW_SETTINGS = frozenset({
    "DB_CA_FILE", "DB_CA_PEM",
    "SQS_REGION", "SQS_ACCESS_KEY_ID", "SQS_SECRET_ACCESS_KEY",
    "KEY_PROVIDER", "KMS_KEY_ID", "SCW_KEY_ID", "SCW_REGION", "SCW_SECRET_KEY",
    "CLOSING_KEY_PEM",
    "CONFORMANCE_CHECK", "CONFORMANCE_CHECK_TOKEN",
    *(f"{name}_SECRET_ARN" for name in SECRET_SETTINGS + LONG_SETTINGS),
})
