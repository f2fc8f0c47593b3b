# PostgreSQL 15 in the private subnets: TLS required, storage encrypted, 30
# days of backups (point-in-time recovery), deletion protection. The master
# user is the owner role; the migrate function alone has its password.

resource "aws_db_subnet_group" "main" {
  name       = "${var.name_prefix}-database"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "main" {
  name   = "${var.name_prefix}-postgres15"
  family = "postgres15"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  # Connections and failed statements are logged; parameters are not (they
  # would put invoice and personal data in the logs).
  parameter {
    name  = "log_connections"
    value = "1"
  }

  parameter {
    name  = "log_disconnections"
    value = "1"
  }
}

resource "aws_cloudwatch_log_group" "database" {
  for_each          = toset(["postgresql", "upgrade"])
  name              = "/aws/rds/instance/${var.name_prefix}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.platform.arn
}

resource "aws_db_instance" "main" {
  # checkov:skip=CKV_AWS_161: the code signs in with role passwords (Secrets Manager), not IAM tokens
  # checkov:skip=CKV_AWS_118: CloudWatch's standard RDS metrics; enhanced monitoring needs one more role
  # checkov:skip=CKV_AWS_353: optional (var.db_performance_insights): not offered on the smallest classes
  identifier     = var.name_prefix
  engine         = "postgres"
  engine_version = "15"
  instance_class = var.db_instance_class

  db_name  = var.db_name
  username = var.db_owner_user
  password = random_password.db_owner.result
  port     = 5432

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_max_allocated_storage
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.platform.arn

  db_subnet_group_name   = aws_db_subnet_group.main.name
  vpc_security_group_ids = [aws_security_group.database.id]
  publicly_accessible    = false
  multi_az               = var.db_multi_az
  parameter_group_name   = aws_db_parameter_group.main.name
  ca_cert_identifier     = var.db_ca_cert_identifier

  backup_retention_period   = 30
  backup_window             = "01:00-02:00"
  maintenance_window        = "sun:02:30-sun:03:30"
  copy_tags_to_snapshot     = true
  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name_prefix}-final"

  auto_minor_version_upgrade      = true
  allow_major_version_upgrade     = false
  enabled_cloudwatch_logs_exports = ["postgresql", "upgrade"]

  performance_insights_enabled          = var.db_performance_insights
  performance_insights_kms_key_id       = var.db_performance_insights ? aws_kms_key.platform.arn : null
  performance_insights_retention_period = var.db_performance_insights ? 7 : null

  depends_on = [aws_cloudwatch_log_group.database]
}
