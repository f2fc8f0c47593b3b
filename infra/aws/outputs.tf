output "api_url" {
  description = "The API's address (the custom domain's when one is set)."
  value       = var.domain_name != "" ? "https://${var.domain_name}" : aws_api_gateway_stage.api.invoke_url
}

output "api_domain_target" {
  description = "Where the custom domain's DNS record (CNAME or alias) must point."
  value       = var.domain_name != "" ? aws_api_gateway_domain_name.api[0].regional_domain_name : null
}

output "function_names" {
  description = "Every function, by its manifest name."
  value       = local.function_names
}

output "archive_bucket" {
  description = "The Object Lock archive bucket."
  value       = aws_s3_bucket.archive.id
}

output "queues" {
  description = "The queues and their dead-letter queues."
  value = {
    for key, queue in aws_sqs_queue.main : key => {
      url          = queue.id
      dead_letters = aws_sqs_queue.dead_letters[key].id
    }
  }
}

output "database_endpoint" {
  description = "PostgreSQL, reachable from the functions' security group only."
  value       = aws_db_instance.main.address
}

output "secrets_to_fill" {
  description = "Secrets whose value the operator puts in (docs/deploy/aws.md) when it was not given to Terraform."
  value = compact([
    nonsensitive(var.smtp_password == null) && var.smtp_user != "" ? aws_secretsmanager_secret.smtp_password.arn : "",
    nonsensitive(var.closing_key_pem == null) ? aws_secretsmanager_secret.closing_key_pem.arn : "",
  ])
}

output "alarm_topic" {
  description = "The SNS topic every alarm publishes to."
  value       = aws_sns_topic.alarms.arn
}

output "migration_result" {
  description = "What the migrate function answered at this apply."
  value       = aws_lambda_invocation.migrate.result
}
