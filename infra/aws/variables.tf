# What the operator chooses. Everything a function sees comes from here or from
# a resource of this configuration, never from the machine that packaged it.

# -- where ---------------------------------------------------------------------------------

variable "region" {
  description = "AWS region. Paris only: invoices, ledger and archive stay in France."
  type        = string
  default     = "eu-west-3"

  validation {
    condition     = var.region == "eu-west-3"
    error_message = "The system is deployed in eu-west-3 (Paris) only; see docs/deploy/aws.md."
  }
}

variable "allowed_account_ids" {
  description = "If set, the provider refuses to touch any other account (guards against the wrong profile)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}

variable "name_prefix" {
  description = "Prefix of every name: functions are \"<prefix>-<manifest name>\"."
  type        = string
  default     = "einvoice"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name_prefix))
    error_message = "name_prefix: lower-case letters, digits and dashes, 2 to 21 characters."
  }
}

variable "package_dir" {
  description = "Where bin/package aws wrote <name>.zip for every function of deploy/manifest.py."
  type        = string
  default     = "../../dist/aws"
}

# -- network -------------------------------------------------------------------------------

variable "vpc_cidr" {
  description = "The VPC's address range (a /16: two public and two private /20 subnets are cut from it)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Two or more zones of eu-west-3 (the database subnet group needs two)."
  type        = list(string)
  default     = ["eu-west-3a", "eu-west-3b"]

  validation {
    condition     = length(var.availability_zones) >= 2 && alltrue([for az in var.availability_zones : startswith(az, "eu-west-3")])
    error_message = "At least two availability zones, all in eu-west-3."
  }
}

variable "interface_endpoints" {
  description = "Private endpoints for Secrets Manager, SQS, KMS and Lambda (AWS calls stay off the NAT; about 7 EUR a month each per zone)."
  type        = bool
  default     = true
}

# -- database ------------------------------------------------------------------------------

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.small"
}

variable "db_allocated_storage" {
  description = "Initial storage, GiB."
  type        = number
  default     = 20
}

variable "db_max_allocated_storage" {
  description = "Storage autoscaling ceiling, GiB."
  type        = number
  default     = 100
}

variable "db_multi_az" {
  description = "A standby in a second zone (recommended for production)."
  type        = bool
  default     = true
}

variable "db_performance_insights" {
  description = "Performance Insights (encrypted with the platform key); not offered on the smallest instance classes."
  type        = bool
  default     = false
}

variable "db_name" {
  description = "The database (UTF8)."
  type        = string
  default     = "einvoice"
}

variable "db_owner_user" {
  description = "The owner role: the RDS master user, which runs the migrations (only the migrate function has its password)."
  type        = string
  default     = "einvoice_owner"
}

variable "db_app_user" {
  description = "The application role every other function connects as (no BYPASSRLS, not the owner)."
  type        = string
  default     = "einvoice_app"
}

variable "db_ca_cert_identifier" {
  description = "The RDS certificate authority of the instance; db_ca_pem must hold its eu-west-3 root."
  type        = string
  default     = "rds-ca-ecc384-g1"

  validation {
    condition     = contains(["rds-ca-ecc384-g1", "rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1"], var.db_ca_cert_identifier)
    error_message = "One of rds-ca-ecc384-g1, rds-ca-rsa2048-g1 or rds-ca-rsa4096-g1."
  }
}

variable "db_ca_pem" {
  description = "The root certificate (PEM) of db_ca_cert_identifier for eu-west-3, or the whole regional bundle, from https://truststore.pki.rds.amazonaws.com/eu-west-3/eu-west-3-bundle.pem: stored in Secrets Manager (too long for Lambda's environment), the functions verify the database's certificate against it (EINVOICE_DB_CA_PEM_SECRET_ARN)."
  type        = string

  validation {
    condition     = length(regexall("-----BEGIN CERTIFICATE-----", var.db_ca_pem)) >= 1 && length(var.db_ca_pem) <= 65536
    error_message = "db_ca_pem: PEM certificates (the root matching db_ca_cert_identifier, or the regional bundle), at most 64 KB; see docs/deploy/aws.md."
  }
}

# -- mail, sign-up, web --------------------------------------------------------------------

variable "smtp_host" {
  description = "SMTP relay for sign-up mail (STARTTLS with a verified certificate), e.g. email-smtp.eu-west-3.amazonaws.com."
  type        = string
}

variable "smtp_port" {
  description = "SMTP relay port (the functions may reach it and 443, nothing else)."
  type        = number
  default     = 587
}

variable "smtp_user" {
  description = "SMTP user name (empty: no login)."
  type        = string
  default     = ""
}

variable "smtp_password" {
  description = "SMTP password, stored in Secrets Manager. Leave null to put it there yourself (never in the state): see docs/deploy/aws.md."
  type        = string
  default     = null
  sensitive   = true
}

variable "mail_from" {
  description = "Sender of sign-up mail, e.g. \"einvoice <no-reply@example.fr>\"."
  type        = string
}

variable "signup_confirm_url" {
  description = "The frontend page a sign-up link points to (https)."
  type        = string

  validation {
    condition     = startswith(var.signup_confirm_url, "https://")
    error_message = "signup_confirm_url must be https."
  }
}

variable "frontend_origin" {
  description = "The one browser origin allowed cross-origin with credentials, e.g. https://app.example.fr (empty: no CORS at all)."
  type        = string
  default     = ""

  validation {
    condition     = var.frontend_origin == "" || can(regex("^https://[a-z0-9.-]+(:[0-9]+)?$", var.frontend_origin))
    error_message = "frontend_origin: one lower-case https origin, no path, or empty."
  }
}

variable "domain_name" {
  description = "Custom domain of the API, e.g. api.example.fr (empty: the execute-api address)."
  type        = string
  default     = ""
}

variable "certificate_arn" {
  description = "ACM certificate for domain_name, issued in eu-west-3 (required with domain_name)."
  type        = string
  default     = ""
}

variable "api_stage_name" {
  description = "API Gateway stage."
  type        = string
  default     = "v1"
}

variable "api_throttle_rate_limit" {
  description = "Requests per second the stage lets through (steady state), before the app's own rate limits."
  type        = number
  default     = 50
}

variable "api_throttle_burst_limit" {
  description = "Burst the stage lets through."
  type        = number
  default     = 100
}

variable "xray_tracing" {
  description = "X-Ray tracing for the stage and the functions (X-Ray's write actions cannot be limited to a resource)."
  type        = bool
  default     = false
}

# -- signing and anchoring -----------------------------------------------------------------

variable "closing_key_pem" {
  description = "The Ed25519 closing signing key (PEM), stored in Secrets Manager. Leave null to put it there yourself (never in the state): see docs/deploy/aws.md."
  type        = string
  default     = null
  sensitive   = true
}

variable "closing_public_keys" {
  description = "Retired closing public keys (raw Ed25519, 64 hex digits each) still trusted for the closings and witnesses they signed: add the old key's here when the closing key is replaced (docs/deploy/keys.md). Stored in Secrets Manager, beside the closing key."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for key in var.closing_public_keys : can(regex("^[0-9a-f]{64}$", key))])
    error_message = "Each closing_public_keys entry is 64 lower-case hex digits (a raw Ed25519 public key)."
  }
}

variable "ots_calendars" {
  description = "OpenTimestamps calendar URLs (https); they receive hashes only."
  type        = list(string)
  default     = []
}

variable "tsa_url" {
  description = "RFC 3161 time-stamping authority (https); it receives hashes only. Needs tsa_certificate_file."
  type        = string
  default     = ""
}

variable "tsa_certificate_file" {
  description = "Path, inside the function package, of the PEM the TSA's tokens are verified against."
  type        = string
  default     = ""
}

# -- queues, archive, alarms, logs ---------------------------------------------------------

variable "queue_max_concurrency" {
  description = "At most this many concurrent consumers per queue (keeps PostgreSQL's connections bounded; 2 or more)."
  type        = number
  default     = 5

  validation {
    condition     = var.queue_max_concurrency >= 2
    error_message = "Lambda needs a maximum concurrency of at least 2."
  }
}

variable "ledger_queue_producer_arns" {
  description = "IAM principals (outside this configuration) allowed to send ledger entries to the ledger queue."
  type        = list(string)
  default     = []
}

variable "archive_bucket_name" {
  description = "Name of the Object Lock archive bucket (empty: <prefix>-archive-<account id>)."
  type        = string
  default     = ""
}

variable "archive_purge_enabled" {
  description = "Give retention-purge s3:DeleteObjectVersion on the archive (the code purges no archived object yet; the lock refuses unexpired versions anyway)."
  type        = bool
  default     = false
}

variable "alarm_email" {
  description = "Where alarms are mailed (the subscription must be confirmed from that mailbox)."
  type        = string
}

variable "rate_limit_refusals_threshold" {
  description = "Alarm when more requests than this are refused by the rate limits in 5 minutes."
  type        = number
  default     = 100
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps the functions', API's and database's logs."
  type        = number
  default     = 365

  validation {
    condition     = contains([365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "At least a year, and one of the values CloudWatch Logs accepts."
  }
}
