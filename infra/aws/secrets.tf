# Every secret a function needs is a Secrets Manager secret, encrypted with the
# platform key; a function's environment holds only its ARN
# (EINVOICE_<SETTING>_SECRET_ARN) and the code reads the value at cold start.
# The two database passwords are generated here (so they are in the state:
# keep it in an encrypted backend); the SMTP password and the closing key may
# instead be put into their secret by the operator, never passing through
# Terraform (docs/deploy/aws.md).

resource "random_password" "db_owner" {
  length  = 48
  special = false # RDS refuses some punctuation in a master password
}

resource "random_password" "db_app" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "db_owner_password" {
  name        = "${var.name_prefix}/db-owner-password"
  description = "PostgreSQL owner (RDS master) password: the migrate function only"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "db_owner_password" {
  secret_id     = aws_secretsmanager_secret.db_owner_password.id
  secret_string = random_password.db_owner.result
}

resource "aws_secretsmanager_secret" "db_app_password" {
  name        = "${var.name_prefix}/db-app-password"
  description = "PostgreSQL application role password"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "db_app_password" {
  secret_id     = aws_secretsmanager_secret.db_app_password.id
  secret_string = random_password.db_app.result
}

resource "aws_secretsmanager_secret" "smtp_password" {
  name        = "${var.name_prefix}/smtp-password"
  description = "SMTP relay password (sign-up mail)"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "smtp_password" {
  count         = nonsensitive(var.smtp_password != null) ? 1 : 0
  secret_id     = aws_secretsmanager_secret.smtp_password.id
  secret_string = var.smtp_password
}

resource "aws_secretsmanager_secret" "closing_key_pem" {
  name        = "${var.name_prefix}/closing-key-pem"
  description = "Ed25519 closing signing key (PEM): seals periods and witnesses"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "closing_key_pem" {
  count         = nonsensitive(var.closing_key_pem != null) ? 1 : 0
  secret_id     = aws_secretsmanager_secret.closing_key_pem.id
  secret_string = var.closing_key_pem
}

# Not secret, but too long for Lambda's 4 KB of environment beside the rest:
# the database's root certificate and the closing keys still trusted. The
# functions read them the same way (EINVOICE_<SETTING>_SECRET_ARN).
resource "aws_secretsmanager_secret" "database_ca" {
  name        = "${var.name_prefix}/database-ca-pem"
  description = "The RDS root certificate the functions verify the database against (PEM)"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "database_ca" {
  secret_id     = aws_secretsmanager_secret.database_ca.id
  secret_string = var.db_ca_pem
}

resource "aws_secretsmanager_secret" "closing_public_keys" {
  name        = "${var.name_prefix}/closing-public-keys"
  description = "Retired closing public keys (hex, comma-separated) still trusted for what they signed"
  kms_key_id  = aws_kms_key.platform.arn
}

resource "aws_secretsmanager_secret_version" "closing_public_keys" {
  count         = length(var.closing_public_keys) > 0 ? 1 : 0
  secret_id     = aws_secretsmanager_secret.closing_public_keys.id
  secret_string = join(",", var.closing_public_keys)
}

locals {
  # Which secret each capability brings (iam.tf grants exactly these; the
  # environment names them EINVOICE_<setting>_SECRET_ARN in functions.tf).
  secrets_of_capability = {
    database       = [aws_secretsmanager_secret.db_app_password.arn, aws_secretsmanager_secret.database_ca.arn]
    database_owner = [aws_secretsmanager_secret.db_owner_password.arn]
    mail           = var.smtp_user != "" ? [aws_secretsmanager_secret.smtp_password.arn] : []
    closing_key    = concat([aws_secretsmanager_secret.closing_key_pem.arn], length(var.closing_public_keys) > 0 ? [aws_secretsmanager_secret.closing_public_keys.arn] : [])
  }
}
