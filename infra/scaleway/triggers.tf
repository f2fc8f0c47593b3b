# The triggers of app.py, on Scaleway. Routes: the api function itself (its
# HTTP endpoint). Queues: one SQS trigger per consumer. Schedules: one CRON
# per schedule function, UNIX syntax, UTC, the manifest's expression.

resource "scaleway_function_trigger" "append_ledger" {
  function_id = scaleway_function.append_ledger.id
  name        = "ledger-queue"
  description = "app.append_ledger_entries: the ledger queue"

  sqs {
    project_id = scaleway_mnq_sqs.main.project_id
    queue      = scaleway_mnq_sqs_queue.ledger.name
    region     = var.region
  }
}

resource "scaleway_function_trigger" "issue_invoice" {
  function_id = scaleway_function.issue_invoice.id
  name        = "invoice-queue"
  description = "app.issue_queued_invoices: the bulk invoice queue"

  sqs {
    project_id = scaleway_mnq_sqs.main.project_id
    queue      = scaleway_mnq_sqs_queue.invoice.name
    region     = var.region
  }
}

resource "scaleway_function_cron" "retention_purge" {
  function_id = scaleway_function.retention_purge.id
  name        = "retention-purge"
  schedule    = "17 3 * * *" # daily, 03:17 UTC
  args        = "{}"
}

resource "scaleway_function_cron" "scheduled_closings" {
  function_id = scaleway_function.scheduled_closings.id
  name        = "scheduled-closings"
  schedule    = "5 * * * *" # hourly at :05 UTC
  args        = "{}"
}

resource "scaleway_function_cron" "anchor_retries" {
  function_id = scaleway_function.anchor_retries.id
  name        = "anchor-retries"
  schedule    = "7-59/15 * * * *" # every 15 minutes from :07 UTC
  args        = "{}"
}

resource "scaleway_function_cron" "archive_sweep" {
  function_id = scaleway_function.archive_sweep.id
  name        = "archive-sweep"
  schedule    = "*/10 * * * *" # every 10 minutes
  args        = "{}"
}
