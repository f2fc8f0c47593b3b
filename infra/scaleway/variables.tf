variable "project_id" {
  description = "The Scaleway project that holds everything (use one dedicated to einvoice: IAM permission sets are project-wide)."
  type        = string
}

variable "region" {
  description = "The only region used. Everything, backups included, stays in fr-par."
  type        = string
  default     = "fr-par"

  validation {
    condition     = var.region == "fr-par"
    error_message = "This deployment is fr-par only (the EU-only statement in docs/deploy/scaleway.md relies on it)."
  }
}

variable "package_dir" {
  description = "Where bin/package scaleway wrote <function>.zip."
  type        = string
  default     = "../../dist/scaleway"
}

variable "deployer_principals" {
  description = "Bucket-policy principals of whoever runs Terraform (\"user_id:<uuid>\" or \"application_id:<uuid>\"): once a bucket policy exists Scaleway denies every principal it does not name, so Terraform needs read access to refresh the bucket."
  type        = list(string)

  validation {
    condition     = length(var.deployer_principals) > 0 && alltrue([for p in var.deployer_principals : can(regex("^(user_id|application_id):[0-9a-f-]{36}$", p))])
    error_message = "Each principal must be user_id:<uuid> or application_id:<uuid> (never *)."
  }
}

variable "archive_bucket" {
  description = "Name of the Object Lock bucket (globally unique)."
  type        = string
}

variable "ledger_queue" {
  description = "Queue of ledger appends (Settings.ledger_queue)."
  type        = string
  default     = "einvoice-ledger-append"
}

variable "invoice_queue" {
  description = "Queue of bulk-issued invoices (Settings.invoice_queue)."
  type        = string
  default     = "einvoice-invoice-issue"
}

variable "db_node_type" {
  description = "Managed PostgreSQL node type."
  type        = string
  default     = "db-pro2-xxs"
}

variable "db_ha_cluster" {
  description = "A standby node in another zone of fr-par (recreates the instance when changed)."
  type        = bool
  default     = true
}

variable "db_volume_size_in_gb" {
  description = "Block volume of the database."
  type        = number
  default     = 20
}

variable "db_owner_user" {
  description = "The role that owns the tables and runs the migrations (Settings.db_owner_user)."
  type        = string
  default     = "einvoice_owner"
}

variable "db_app_user" {
  description = "The role the functions connect as (Settings.db_app_user)."
  type        = string
  default     = "einvoice_app"
}

variable "mail_from" {
  description = "Sender of the sign-up mails (a domain verified in Transactional Email)."
  type        = string
}

variable "smtp_host" {
  description = "SMTP relay; Scaleway Transactional Email by default (fr-par)."
  type        = string
  default     = "smtp.tem.scw.cloud"
}

variable "smtp_port" {
  description = "SMTP port (STARTTLS)."
  type        = number
  default     = 587
}

variable "smtp_user" {
  description = "SMTP user name (for Transactional Email: the project id)."
  type        = string
}

variable "smtp_password" {
  description = "SMTP password (for Transactional Email: an IAM API secret key allowed TransactionalEmailEmailSmtpCreate)."
  type        = string
  sensitive   = true
}

variable "signup_confirm_url" {
  description = "The frontend page sign-up links point to (https)."
  type        = string
}

variable "frontend_origin" {
  description = "The one browser origin allowed cross-origin, or null for none."
  type        = string
  default     = null
}

variable "closing_key_pem" {
  description = "The Ed25519 closing signing key, PEM (openssl genpkey -algorithm ed25519). Keep an offline copy: closings are verified against it."
  type        = string
  sensitive   = true
}

variable "ots_calendars" {
  description = "OpenTimestamps calendar URLs (https). They receive hashes only."
  type        = list(string)
  default     = []
}

variable "master_key_rotation_period" {
  description = "Key Manager rotation period of the master key (older versions still decrypt)."
  type        = string
  default     = "8760h"
}

variable "retention_purge_archive_key" {
  description = "Give the retention-purge function the only key allowed s3:DeleteObjectVersion. Off until the code purges archives past their retention: COMPLIANCE refuses any earlier delete anyway."
  type        = bool
  default     = false
}

variable "alert_emails" {
  description = "Who Cockpit's alert manager mails."
  type        = list(string)

  validation {
    condition     = length(var.alert_emails) > 0
    error_message = "At least one operator address is needed: the alerts are how the operator learns of a failed archive, a cut chain or dead letters."
  }
}

variable "function_logs_selector" {
  description = "LogQL stream selector of the functions' logs in the Scaleway logs data source (check it in Grafana Explore)."
  type        = string
  default     = "{resource_type=\"serverless_function\"}"
}

variable "rate_limit_refusals_threshold" {
  description = "Log lines carrying RateLimitRefusals in 10 minutes above which the operator is alerted."
  type        = number
  default     = 50
}

variable "dlq_depth_metric" {
  description = "PromQL metric of a queue's visible messages in the Scaleway metrics data source, with a {queue} placeholder label matcher, e.g. 'name_of_metric{resource_name=\"%s\"}'. Null: no dead-letter depth rule (consumer-failure log alerts remain)."
  type        = string
  default     = null
}

variable "registry_namespace" {
  description = "Name of the private Container Registry namespace holding the conformance-check image (unique among Scaleway's registry namespaces of the region)."
  type        = string
}

variable "conformance_check_image" {
  description = "The conformance-check image the operator pushed: <registry endpoint>/conformance-check:<SHA-256 of dist/scaleway/conformance-check.zip>. Null until pushed (a targeted apply creates the registry first)."
  type        = string
  default     = null

  validation {
    condition     = var.conformance_check_image == null || can(regex("^rg\\.[a-z0-9-]+\\.scw\\.cloud/[a-z0-9][a-z0-9._-]*/conformance-check:[0-9a-f]{64}$", var.conformance_check_image))
    error_message = "conformance_check_image must be rg.<region>.scw.cloud/<namespace>/conformance-check:<64 hex digits, the zip's SHA-256>."
  }
}

variable "conformance_check_min_scale" {
  description = "conformance-check instances kept running (0: scale to zero, the first check after an idle spell waits for a cold start)."
  type        = number
  default     = 0
}

variable "closing_public_keys" {
  description = "Retired closing signing keys still trusted: raw Ed25519 public keys, 64 hex digits each. Add the old key's here before a new private key goes live (docs/deploy/keys.md)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for key in var.closing_public_keys : can(regex("^[0-9a-f]{64}$", key))])
    error_message = "Each closing_public_keys entry is 64 lower-case hex digits (a raw Ed25519 public key)."
  }
}
