# Two customer managed keys, both rotated yearly by KMS:
#  - platform: secrets, queues, logs, the alarm topic, the database's storage,
#    the functions' environment and the packages;
#  - data_keys: wraps the per-tenant data keys of the sealed columns
#    (EINVOICE_KEY_PROVIDER=aws-kms); only the functions that open sealed
#    fields may use it.
# The archive bucket is not encrypted with either (buckets.tf says why).

data "aws_iam_policy_document" "platform_key" {
  # A key policy's "*" resource is the key itself, and the account statement is
  # AWS's default one (it lets IAM policies grant the key; the roles' grants are
  # in iam.tf, each limited to this key):
  # checkov:skip=CKV_AWS_109: a key policy must let the account administer its own key
  # checkov:skip=CKV_AWS_111: in a key policy, "*" is this key, not every resource
  # checkov:skip=CKV_AWS_356: in a key policy, "*" is this key, not every resource
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"] # in a key policy, "*" is this key
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid = "CloudWatchLogsEncryptsOurLogGroups"
    actions = [
      "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "platform" {
  description             = "${var.name_prefix}: secrets, queues, logs, database storage"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.platform_key.json
}

resource "aws_kms_alias" "platform" {
  name          = "alias/${var.name_prefix}-platform"
  target_key_id = aws_kms_key.platform.key_id
}

data "aws_iam_policy_document" "data_keys_key" {
  # A key policy's "*" resource is the key itself, and the account statement is
  # AWS's default one (it lets IAM policies grant the key; the roles' grants are
  # in iam.tf, each limited to this key):
  # checkov:skip=CKV_AWS_109: a key policy must let the account administer its own key
  # checkov:skip=CKV_AWS_111: in a key policy, "*" is this key, not every resource
  # checkov:skip=CKV_AWS_356: in a key policy, "*" is this key, not every resource
  statement {
    sid       = "AccountAdministersTheKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
}

resource "aws_kms_key" "data_keys" {
  description             = "${var.name_prefix}: wraps the per-tenant data keys of sealed columns"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.data_keys_key.json
}

resource "aws_kms_alias" "data_keys" {
  name          = "alias/${var.name_prefix}-data-keys"
  target_key_id = aws_kms_key.data_keys.key_id
}
