# One Scaleway function per entry of deploy/manifest.py that runs as a
# function there (scaleway_runs_as; the conformance check is a container:
# containers.tf): the same name, handler, timeout and memory
# (tests/infra/test_scaleway_terraform.py keeps them equal). Public: api and
# health. Private (a caller needs a token or an IAM key allowed
# FunctionsPrivateAccess): everything else; Scaleway's CRON and queue
# triggers reach private functions themselves.
#
# Settings common to every function are set once on the namespace; secrets
# are only ever secret_environment_variables, per function, each function
# getting only those it uses.

locals {
  common_env = {
    EINVOICE_DB_HOST          = local.db_endpoint.ip
    EINVOICE_DB_PORT          = tostring(local.db_endpoint.port)
    EINVOICE_DB_NAME          = scaleway_rdb_database.main.name
    EINVOICE_DB_TLS           = "true"
    EINVOICE_DB_APP_USER      = var.db_app_user
    EINVOICE_S3_ENDPOINT_URL  = "https://s3.${var.region}.scw.cloud"
    EINVOICE_S3_REGION        = var.region
    EINVOICE_S3_CHECKSUMS     = "when_required"
    EINVOICE_ARCHIVE_BUCKET   = scaleway_object_bucket.archive.name
    EINVOICE_SQS_ENDPOINT_URL = scaleway_mnq_sqs.main.endpoint
    EINVOICE_SQS_REGION       = var.region
    EINVOICE_LEDGER_QUEUE     = scaleway_mnq_sqs_queue.ledger.name
    EINVOICE_INVOICE_QUEUE    = scaleway_mnq_sqs_queue.invoice.name
  }

  # Only beside EINVOICE_SCW_SECRET_KEY (invoicing_secrets): the settings
  # refuse the Key Manager provider without it, so a function told the
  # provider but not given the key could not start at all.
  keys_env = {
    EINVOICE_KEY_PROVIDER = "scaleway-key-manager"
    EINVOICE_SCW_KEY_ID   = local.master_key_id
    EINVOICE_SCW_REGION   = var.region
  }

  mail_env = {
    EINVOICE_MAIL_FROM          = var.mail_from
    EINVOICE_SMTP_HOST          = var.smtp_host
    EINVOICE_SMTP_PORT          = tostring(var.smtp_port)
    EINVOICE_SMTP_USER          = var.smtp_user
    EINVOICE_SMTP_STARTTLS      = "true"
    EINVOICE_SIGNUP_CONFIRM_URL = var.signup_confirm_url
  }

  cors_env = var.frontend_origin == null ? {} : {
    EINVOICE_FRONTEND_ORIGIN = var.frontend_origin
  }

  conformance_env = {
    # "https://" and the container's domain (the provider's domain_name,
    # deprecated, is this value without its scheme).
    EINVOICE_CONFORMANCE_CHECK = scaleway_container.conformance_check.public_endpoint
  }

  anchoring_env = length(var.ots_calendars) == 0 ? {} : {
    EINVOICE_OTS_CALENDARS = join(",", var.ots_calendars)
  }

  # The retired closing keys still trusted (not secret), beside the closing key.
  closing_keys_env = length(var.closing_public_keys) == 0 ? {} : {
    EINVOICE_CLOSING_PUBLIC_KEYS = join(",", var.closing_public_keys)
  }

  anchor_retries_env = {
    EINVOICE_FUNCTION_TIMEOUT_SECONDS = "300"
  }

  migrate_env = {
    EINVOICE_DB_OWNER_USER = var.db_owner_user
  }

  app_db_secrets = {
    EINVOICE_DB_APP_PASSWORD = random_password.db_app.result
  }

  owner_db_secrets = {
    EINVOICE_DB_OWNER_PASSWORD = random_password.db_owner.result
  }

  # One IAM key: Object Storage keys (access key id, secret) and the Key
  # Manager secret key.
  invoicing_secrets = {
    EINVOICE_S3_ACCESS_KEY_ID     = scaleway_iam_api_key.invoicing.access_key
    EINVOICE_S3_SECRET_ACCESS_KEY = scaleway_iam_api_key.invoicing.secret_key
    EINVOICE_SCW_SECRET_KEY       = scaleway_iam_api_key.invoicing.secret_key
  }

  closings_secrets = {
    EINVOICE_S3_ACCESS_KEY_ID     = scaleway_iam_api_key.closings.access_key
    EINVOICE_S3_SECRET_ACCESS_KEY = scaleway_iam_api_key.closings.secret_key
  }

  probe_secrets = {
    EINVOICE_S3_ACCESS_KEY_ID     = scaleway_iam_api_key.probe.access_key
    EINVOICE_S3_SECRET_ACCESS_KEY = scaleway_iam_api_key.probe.secret_key
  }

  retention_purge_secrets = var.retention_purge_archive_key ? {
    EINVOICE_S3_ACCESS_KEY_ID     = scaleway_iam_api_key.retention_purge[0].access_key
    EINVOICE_S3_SECRET_ACCESS_KEY = scaleway_iam_api_key.retention_purge[0].secret_key
  } : {}

  queue_secrets = {
    EINVOICE_SQS_ACCESS_KEY_ID     = scaleway_mnq_sqs_credentials.functions.access_key
    EINVOICE_SQS_SECRET_ACCESS_KEY = scaleway_mnq_sqs_credentials.functions.secret_key
  }

  mail_secrets = {
    EINVOICE_SMTP_PASSWORD = var.smtp_password
  }

  closing_key_secrets = {
    EINVOICE_CLOSING_KEY_PEM = var.closing_key_pem
  }

  conformance_secrets = {
    # An IAM secret key, sent as X-Auth-Token (containers.tf says why not a
    # container token).
    EINVOICE_CONFORMANCE_CHECK_TOKEN = scaleway_iam_api_key.conformance_callers.secret_key
  }
}

resource "scaleway_function_namespace" "main" {
  name                  = "einvoice"
  region                = var.region
  project_id            = var.project_id
  description           = "einvoice: every function of deploy/manifest.py"
  environment_variables = merge(local.common_env, local.db_ca_env)
  tags                  = ["einvoice"]
}

# -- HTTP ------------------------------------------------------------------------------

resource "scaleway_function" "api" {
  name                         = "api"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/api.handle"
  privacy                      = "public"
  http_option                  = "redirected"
  timeout                      = 30
  memory_limit                 = 1024
  max_scale                    = 20
  zip_file                     = "${var.package_dir}/api.zip"
  zip_hash                     = filesha256("${var.package_dir}/api.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = merge(local.mail_env, local.cors_env, local.conformance_env, local.anchoring_env, local.keys_env, local.closing_keys_env)
  secret_environment_variables = merge(local.app_db_secrets, local.invoicing_secrets, local.queue_secrets, local.mail_secrets, local.closing_key_secrets, local.conformance_secrets)
  depends_on                   = [terraform_data.migrate]
}

resource "scaleway_function" "health" {
  name                         = "health"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/health.handle"
  privacy                      = "public"
  http_option                  = "redirected"
  timeout                      = 10
  memory_limit                 = 256
  max_scale                    = 2
  zip_file                     = "${var.package_dir}/health.zip"
  zip_hash                     = filesha256("${var.package_dir}/health.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  secret_environment_variables = merge(local.app_db_secrets, local.probe_secrets)
  depends_on                   = [terraform_data.migrate]
}

# -- queues ----------------------------------------------------------------------------

resource "scaleway_function" "append_ledger" {
  name                         = "append-ledger"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/append_ledger.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 30
  memory_limit                 = 512
  max_scale                    = 5
  zip_file                     = "${var.package_dir}/append-ledger.zip"
  zip_hash                     = filesha256("${var.package_dir}/append-ledger.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  secret_environment_variables = local.app_db_secrets
  depends_on                   = [terraform_data.migrate]
}

resource "scaleway_function" "issue_invoice" {
  name                         = "issue-invoice"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/issue_invoice.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 120
  memory_limit                 = 1024
  max_scale                    = 5
  zip_file                     = "${var.package_dir}/issue-invoice.zip"
  zip_hash                     = filesha256("${var.package_dir}/issue-invoice.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = merge(local.conformance_env, local.keys_env)
  secret_environment_variables = merge(local.app_db_secrets, local.invoicing_secrets, local.conformance_secrets)
  depends_on                   = [terraform_data.migrate]
}

# -- schedules -------------------------------------------------------------------------

resource "scaleway_function" "retention_purge" {
  name                         = "retention-purge"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/retention_purge.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 300
  memory_limit                 = 512
  max_scale                    = 1
  zip_file                     = "${var.package_dir}/retention-purge.zip"
  zip_hash                     = filesha256("${var.package_dir}/retention-purge.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  secret_environment_variables = merge(local.app_db_secrets, local.retention_purge_secrets)
  depends_on                   = [terraform_data.migrate]
}

resource "scaleway_function" "scheduled_closings" {
  name                         = "scheduled-closings"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/scheduled_closings.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 600
  memory_limit                 = 512
  max_scale                    = 1
  zip_file                     = "${var.package_dir}/scheduled-closings.zip"
  zip_hash                     = filesha256("${var.package_dir}/scheduled-closings.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = merge(local.anchoring_env, local.closing_keys_env)
  secret_environment_variables = merge(local.app_db_secrets, local.closings_secrets, local.closing_key_secrets)
  depends_on                   = [terraform_data.migrate]
}

resource "scaleway_function" "anchor_retries" {
  name                         = "anchor-retries"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/anchor_retries.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 300
  memory_limit                 = 512
  max_scale                    = 1
  zip_file                     = "${var.package_dir}/anchor-retries.zip"
  zip_hash                     = filesha256("${var.package_dir}/anchor-retries.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = merge(local.anchoring_env, local.anchor_retries_env)
  secret_environment_variables = local.app_db_secrets
  depends_on                   = [terraform_data.migrate]
}

resource "scaleway_function" "archive_sweep" {
  name                         = "archive-sweep"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/archive_sweep.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 300
  memory_limit                 = 512
  max_scale                    = 1
  zip_file                     = "${var.package_dir}/archive-sweep.zip"
  zip_hash                     = filesha256("${var.package_dir}/archive-sweep.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = local.keys_env
  secret_environment_variables = merge(local.app_db_secrets, local.invoicing_secrets)
  depends_on                   = [terraform_data.migrate]
}

# -- the migration job: the only holder of the owner's password -----------------------

resource "scaleway_function" "migrate" {
  name                         = "migrate"
  namespace_id                 = scaleway_function_namespace.main.id
  runtime                      = "python311"
  handler                      = "functions/migrate.handle"
  privacy                      = "private"
  http_option                  = "redirected"
  timeout                      = 300
  memory_limit                 = 256
  max_scale                    = 1
  zip_file                     = "${var.package_dir}/migrate.zip"
  zip_hash                     = filesha256("${var.package_dir}/migrate.zip")
  deploy                       = true
  private_network_id           = scaleway_vpc_private_network.main.id
  environment_variables        = local.migrate_env
  secret_environment_variables = local.owner_db_secrets
  depends_on                   = [scaleway_rdb_privilege.owner, scaleway_rdb_privilege.app]
}
