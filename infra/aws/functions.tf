# Every function of deploy/manifest.py: its package uploaded to the artifacts
# bucket, its log group, its environment (from its capabilities, locals.tf) and
# the function itself, in the private subnets.

locals {
  # What every function is told. The queue names are read when app.py is
  # imported (its SQS decorators), so every function gets them.
  environment_common = {
    POWERTOOLS_SERVICE_NAME      = "einvoice"
    POWERTOOLS_METRICS_NAMESPACE = "einvoice"
    EINVOICE_LEDGER_QUEUE        = local.ledger_queue_name
    EINVOICE_INVOICE_QUEUE       = local.invoice_queue_name
  }

  # What each capability adds. Secrets appear only as the ARN of their
  # Secrets Manager secret (EINVOICE_<setting>_SECRET_ARN), never as a value.
  environment_of_capability = {
    database = {
      EINVOICE_DB_HOST                    = aws_db_instance.main.address
      EINVOICE_DB_PORT                    = tostring(aws_db_instance.main.port)
      EINVOICE_DB_NAME                    = var.db_name
      EINVOICE_DB_TLS                     = "true"
      EINVOICE_DB_CA_PEM_SECRET_ARN       = aws_secretsmanager_secret.database_ca.arn
      EINVOICE_DB_APP_USER                = var.db_app_user
      EINVOICE_DB_APP_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.db_app_password.arn
    }
    database_owner = {
      EINVOICE_DB_OWNER_USER                = var.db_owner_user
      EINVOICE_DB_OWNER_PASSWORD_SECRET_ARN = aws_secretsmanager_secret.db_owner_password.arn
    }
    archive = {
      EINVOICE_ARCHIVE_BUCKET = aws_s3_bucket.archive.id
      EINVOICE_S3_REGION      = var.region
      EINVOICE_S3_CHECKSUMS   = "when_supported"
    }
    archive_probe = {
      EINVOICE_ARCHIVE_BUCKET = aws_s3_bucket.archive.id
      EINVOICE_S3_REGION      = var.region
      EINVOICE_S3_CHECKSUMS   = "when_supported"
    }
    archive_invoices = {}
    archive_witness  = {}
    archive_purge = {
      EINVOICE_ARCHIVE_BUCKET = aws_s3_bucket.archive.id
      EINVOICE_S3_REGION      = var.region
      EINVOICE_S3_CHECKSUMS   = "when_supported"
    }
    invoice_queue_send    = {}
    ledger_queue_consume  = {}
    invoice_queue_consume = {}
    field_keys = {
      EINVOICE_KEY_PROVIDER = "aws-kms"
      EINVOICE_KMS_KEY_ID   = aws_kms_key.data_keys.arn
    }
    conformance_invoke = {
      EINVOICE_CONFORMANCE_CHECK = "aws-lambda:${local.function_names["conformance-check"]}"
    }
    mail = {
      EINVOICE_SMTP_HOST                = var.smtp_host
      EINVOICE_SMTP_PORT                = tostring(var.smtp_port)
      EINVOICE_SMTP_USER                = var.smtp_user
      EINVOICE_SMTP_STARTTLS            = "true"
      EINVOICE_MAIL_FROM                = var.mail_from
      EINVOICE_SMTP_PASSWORD_SECRET_ARN = var.smtp_user != "" ? aws_secretsmanager_secret.smtp_password.arn : ""
    }
    closing_key = {
      EINVOICE_CLOSING_KEY_PEM_SECRET_ARN = aws_secretsmanager_secret.closing_key_pem.arn
      # The retired closing keys still trusted (not secret; a list too long
      # for the environment), only when there are some.
      EINVOICE_CLOSING_PUBLIC_KEYS_SECRET_ARN = length(var.closing_public_keys) > 0 ? aws_secretsmanager_secret.closing_public_keys.arn : ""
    }
    anchoring = {
      EINVOICE_OTS_CALENDARS        = join(",", var.ots_calendars)
      EINVOICE_TSA_URL              = var.tsa_url
      EINVOICE_TSA_CERTIFICATE_FILE = var.tsa_certificate_file
    }
    web = {
      EINVOICE_FRONTEND_ORIGIN    = var.frontend_origin
      EINVOICE_SIGNUP_CONFIRM_URL = var.signup_confirm_url
    }
  }

  # Empty values are left out: an unset setting takes its default.
  function_environment = {
    for name, f in local.functions : name => {
      for key, value in merge(concat(
        [local.environment_common],
        [for capability in f.capabilities : local.environment_of_capability[capability]],
      )...) : key => value if value != ""
    }
  }
}

resource "aws_s3_object" "package" {
  for_each    = local.functions
  bucket      = aws_s3_bucket.artifacts.id
  key         = "functions/${each.key}.zip"
  source      = "${var.package_dir}/${each.key}.zip"
  source_hash = filemd5("${var.package_dir}/${each.key}.zip")

  depends_on = [
    aws_s3_bucket_versioning.artifacts,
    aws_s3_bucket_server_side_encryption_configuration.artifacts,
  ]
}

resource "aws_cloudwatch_log_group" "fn" {
  for_each          = local.functions
  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.platform.arn
}

resource "aws_lambda_function" "fn" {
  for_each      = local.functions
  function_name = local.function_names[each.key]
  description   = "einvoice ${each.key} (${each.value.trigger})"
  role          = aws_iam_role.fn[each.key].arn
  runtime       = "python3.11"
  architectures = ["x86_64"]
  handler       = each.value.handler
  timeout       = each.value.timeout
  memory_size   = each.value.memory

  s3_bucket         = aws_s3_object.package[each.key].bucket
  s3_key            = aws_s3_object.package[each.key].key
  s3_object_version = aws_s3_object.package[each.key].version_id
  source_code_hash  = filebase64sha256("${var.package_dir}/${each.key}.zip")

  kms_key_arn = aws_kms_key.platform.arn
  environment {
    variables = local.function_environment[each.key]
  }

  vpc_config {
    subnet_ids         = aws_subnet.private[*].id
    security_group_ids = [aws_security_group.functions.id]
  }

  tracing_config {
    mode = var.xray_tracing ? "Active" : "PassThrough"
  }

  lifecycle {
    precondition {
      condition     = var.tsa_url == "" || var.tsa_certificate_file != ""
      error_message = "tsa_url needs tsa_certificate_file (the PEM its tokens are verified against)."
    }
  }

  depends_on = [
    aws_cloudwatch_log_group.fn,
  ]
}
