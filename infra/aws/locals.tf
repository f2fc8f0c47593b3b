locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  archive_bucket_name   = var.archive_bucket_name != "" ? var.archive_bucket_name : "${var.name_prefix}-archive-${local.account_id}"
  artifacts_bucket_name = "${var.name_prefix}-artifacts-${local.account_id}"
  logs_bucket_name      = "${var.name_prefix}-logs-${local.account_id}"

  ledger_queue_name  = "${var.name_prefix}-ledger-append"
  invoice_queue_name = "${var.name_prefix}-invoice-issue"

  # One entry per function of deploy/manifest.py (tests/infra/test_aws_terraform.py
  # holds the two equal): handler, timeout and memory as the manifest says, and
  # the capabilities that decide both its environment (functions.tf) and its
  # role (iam.tf), so what a function is told and what it may do cannot drift.
  functions = {
    "api" = {
      handler = "app.app"
      trigger = "http"
      timeout = 30
      memory  = 1024
      capabilities = [
        "database", "archive", "archive_invoices", "archive_witness", "invoice_queue_send",
        "field_keys", "conformance_invoke", "mail", "closing_key", "anchoring", "web",
      ]
    }
    "health" = {
      handler      = "functions.health.handler"
      trigger      = "http"
      timeout      = 10
      memory       = 256
      capabilities = ["database", "archive_probe"]
    }
    "conformance-check" = {
      handler      = "functions.conformance_check.handle_aws"
      trigger      = "invoke"
      timeout      = 30
      memory       = 1024
      capabilities = []
    }
    "append-ledger" = {
      handler      = "app.append_ledger_entries"
      trigger      = "queue"
      timeout      = 30
      memory       = 512
      capabilities = ["database", "ledger_queue_consume"]
    }
    "issue-invoice" = {
      handler = "app.issue_queued_invoices"
      trigger = "queue"
      timeout = 120
      memory  = 1024
      capabilities = [
        "database", "archive", "archive_invoices", "invoice_queue_consume", "field_keys",
        "conformance_invoke",
      ]
    }
    "retention-purge" = {
      handler      = "app.retention_purge"
      trigger      = "schedule"
      timeout      = 300
      memory       = 512
      capabilities = ["database", "archive_purge"]
    }
    "scheduled-closings" = {
      handler      = "app.scheduled_closings"
      trigger      = "schedule"
      timeout      = 600
      memory       = 512
      capabilities = ["database", "archive", "archive_witness", "closing_key"]
    }
    "anchor-retries" = {
      handler      = "app.anchor_retries"
      trigger      = "schedule"
      timeout      = 300
      memory       = 512
      capabilities = ["database", "anchoring"]
    }
    "archive-sweep" = {
      handler      = "app.archive_sweep"
      trigger      = "schedule"
      timeout      = 300
      memory       = 512
      capabilities = ["database", "archive", "archive_invoices", "field_keys"]
    }
    "migrate" = {
      handler = "functions.migrate.handle_aws"
      trigger = "job"
      timeout = 300
      memory  = 256
      # The owner's password, and the application role's (the job creates
      # that role or sets its password before granting it anything).
      capabilities = ["database", "database_owner"]
    }
  }

  function_names = { for name, _ in local.functions : name => "${var.name_prefix}-${name}" }

  # The schedules of app.py (the same times as the manifest's UNIX cron, UTC),
  # in EventBridge's syntax, and how long without a run before an alarm.
  schedules = {
    "retention-purge"    = { expression = "cron(17 3 * * ? *)", silence_alarm_seconds = 86400 }
    "scheduled-closings" = { expression = "cron(5 * * * ? *)", silence_alarm_seconds = 7200 }
    "anchor-retries"     = { expression = "cron(7/15 * * * ? *)", silence_alarm_seconds = 1800 }
    "archive-sweep"      = { expression = "cron(0/10 * * * ? *)", silence_alarm_seconds = 1800 }
  }

  # The queues of app.py: which function consumes each, its batch size, and
  # the Settings field naming it.
  queues = {
    ledger = {
      name       = local.ledger_queue_name
      consumer   = "append-ledger"
      batch_size = 10
      setting    = "EINVOICE_LEDGER_QUEUE"
    }
    invoice = {
      name       = local.invoice_queue_name
      consumer   = "issue-invoice"
      batch_size = 5
      setting    = "EINVOICE_INVOICE_QUEUE"
    }
  }
}
