output "api_url" {
  description = "The API (public, HTTPS only). Point the frontend's domain here."
  value       = "https://${scaleway_function.api.domain_name}"
}

output "health_url" {
  description = "The health probe alone."
  value       = "https://${scaleway_function.health.domain_name}"
}

output "database_endpoint" {
  description = "PostgreSQL on the Private Network (no public endpoint)."
  value       = "${local.db_endpoint.ip}:${local.db_endpoint.port}"
}

output "archive_bucket" {
  value = scaleway_object_bucket.archive.name
}

output "master_key_id" {
  value = local.master_key_id
}

output "queues" {
  value = {
    ledger               = scaleway_mnq_sqs_queue.ledger.url
    ledger_dead_letters  = scaleway_mnq_sqs_queue.ledger_dead_letters.url
    invoice              = scaleway_mnq_sqs_queue.invoice.url
    invoice_dead_letters = scaleway_mnq_sqs_queue.invoice_dead_letters.url
  }
}

output "log_alert_rules_yaml" {
  description = "The Loki rule group pushed to Cockpit (to check, or to paste into Grafana as data source-managed rules)."
  value       = yamlencode(local.log_alert_rules)
}

output "secret_manager_paths" {
  description = "Where each secret is kept in Secret Manager."
  value       = [for name in local.secret_names : "/einvoice/${name}"]
}

output "registry_endpoint" {
  description = "Where docker pushes the conformance-check image (docker login rg.<region>.scw.cloud)."
  value       = scaleway_registry_namespace.main.endpoint
}

output "conformance_check_url" {
  description = "The private conformance-check container (X-Auth-Token: the conformance-check-token secret)."
  value       = scaleway_container.conformance_check.public_endpoint
}
