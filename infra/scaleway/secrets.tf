# Every secret the deployment holds, kept in Secret Manager (fr-par) for the
# operator: rotation, break-glass, audit of who read it. The functions get
# their copies through secret_environment_variables (functions.tf), which
# Scaleway stores encrypted and never shows back; no function reads Secret
# Manager at run time.
locals {
  secret_values = merge({
    "db-admin-password"        = random_password.db_admin.result
    "db-owner-password"        = random_password.db_owner.result
    "db-app-password"          = random_password.db_app.result
    "smtp-password"            = var.smtp_password
    "closing-key-pem"          = var.closing_key_pem
    "queue-secret-key"         = scaleway_mnq_sqs_credentials.functions.secret_key
    "invoicing-iam-secret-key" = scaleway_iam_api_key.invoicing.secret_key # S3 and Key Manager
    "closings-iam-secret-key"  = scaleway_iam_api_key.closings.secret_key
    "probe-iam-secret-key"     = scaleway_iam_api_key.probe.secret_key
    "conformance-check-token"  = scaleway_iam_api_key.conformance_callers.secret_key
    }, var.retention_purge_archive_key ? {
    "retention-purge-iam-secret-key" = scaleway_iam_api_key.retention_purge[0].secret_key
  } : {})

  secret_names = concat([
    "db-admin-password", "db-owner-password", "db-app-password", "smtp-password",
    "closing-key-pem", "queue-secret-key", "invoicing-iam-secret-key",
    "closings-iam-secret-key", "probe-iam-secret-key", "conformance-check-token",
  ], var.retention_purge_archive_key ? ["retention-purge-iam-secret-key"] : [])
}

resource "scaleway_secret" "all" {
  for_each    = toset(local.secret_names)
  name        = each.key
  path        = "/einvoice"
  region      = var.region
  project_id  = var.project_id
  protected   = true
  description = "einvoice: ${each.key}"
  tags        = ["einvoice"]
}

resource "scaleway_secret_version" "all" {
  for_each    = toset(local.secret_names)
  secret_id   = scaleway_secret.all[each.key].id
  region      = var.region
  data        = local.secret_values[each.key]
  description = "set by Terraform"
}
