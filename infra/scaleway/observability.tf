# Alerts. Cockpit's alert manager (fr-par) mails the operator; the rules are
# evaluated by the data sources themselves (Loki for logs, Mimir for
# metrics): Cockpit supports neither Grafana-managed rules nor Grafana's
# alert manager. The provider can enable the alert manager, its contact
# points and Scaleway's preconfigured rules, and create a token allowed to
# set up rules, but has no resource for a custom rule. So the rules below are
# written here and pushed to the data sources' ruler API (the Loki and Mimir
# APIs Cockpit exposes) with that token, from terraform apply, as the
# migration call is. The functions' metrics are Powertools EMF JSON lines in
# their logs (namespace "einvoice"), which Cockpit does not turn into
# metrics: they are alerted on as log lines.

resource "scaleway_cockpit_alert_manager" "main" {
  project_id = var.project_id
  region     = var.region

  dynamic "contact_points" {
    for_each = var.alert_emails
    content {
      email = contact_points.value
    }
  }
}

# Set up rules, nothing else: it can neither read nor write data.
resource "scaleway_cockpit_token" "rules" {
  project_id = var.project_id
  region     = var.region
  name       = "einvoice-alert-rules"

  scopes {
    query_metrics       = false
    write_metrics       = false
    setup_metrics_rules = true
    query_logs          = false
    write_logs          = false
    setup_logs_rules    = true
    setup_alerts        = false
    query_traces        = false
    write_traces        = false
  }
}

# Where Scaleway stores the functions' logs and its products' metrics (the
# data sources Scaleway creates itself; read once the alert manager is on).
data "scaleway_cockpit_source" "scaleway_logs" {
  project_id = var.project_id
  region     = var.region
  type       = "logs"
  origin     = "scaleway"
  depends_on = [scaleway_cockpit_alert_manager.main]
}

data "scaleway_cockpit_source" "scaleway_metrics" {
  count      = var.dlq_depth_metric == null ? 0 : 1
  project_id = var.project_id
  region     = var.region
  type       = "metrics"
  origin     = "scaleway"
  depends_on = [scaleway_cockpit_alert_manager.main]
}

locals {
  logs = var.function_logs_selector

  # Each condition the code or the docs say "alerts the operator".
  log_alert_rules = {
    name     = "einvoice"
    interval = "1m"
    rules = [
      {
        alert       = "ArchiveFailures"
        expr        = "sum(count_over_time(${local.logs} |= `\"_aws\"` |= `\"ArchiveFailures\"` [15m])) > 0"
        labels      = { severity = "critical" }
        annotations = { summary = "An invoice could not be archived (the sweep retries); see docs/deploy/scaleway.md#alerts." }
      },
      {
        alert       = "AnchoringFailures"
        expr        = "sum(count_over_time(${local.logs} |= `\"_aws\"` |= `\"AnchoringFailures\"` [1h])) > 0"
        labels      = { severity = "warning" }
        annotations = { summary = "Anchoring a closing failed (best-effort, retried every 15 minutes)." }
      },
      {
        alert       = "WitnessAlarms"
        expr        = "sum(count_over_time(${local.logs} |= `\"_aws\"` |= `\"WitnessAlarms\"` [15m])) > 0"
        labels      = { severity = "critical" }
        annotations = { summary = "A chain no longer matches its newest witness: entries were cut." }
      },
      {
        alert       = "ArchiveMissing"
        expr        = "sum(count_over_time(${local.logs} |= `\"_aws\"` |= `\"ArchiveMissing\"` [15m])) > 0"
        labels      = { severity = "critical" }
        annotations = { summary = "An archived invoice's object version cannot be read back from the archive: its download answers 503." }
      },
      {
        alert       = "RateLimitRefusals"
        expr        = "sum(count_over_time(${local.logs} |= `\"_aws\"` |= `\"RateLimitRefusals\"` [10m])) > ${var.rate_limit_refusals_threshold}"
        labels      = { severity = "warning" }
        annotations = { summary = "Many requests refused by the rate limits: guessing or abuse." }
      },
      {
        alert       = "ArchiveTampered"
        expr        = "sum(count_over_time(${local.logs} |= `archive integrity check failed` [15m])) > 0"
        labels      = { severity = "critical" }
        annotations = { summary = "An archived document does not match the SHA-256 the ledger holds." }
      },
      {
        alert       = "ServiceUnavailable"
        expr        = "sum(count_over_time(${local.logs} |~ `archive refused|archive version missing|service unavailable|schematron unavailable|keys provider unavailable|secret unavailable|database unavailable|archive unavailable|queue unavailable` [10m])) > 0"
        labels      = { severity = "critical" }
        annotations = { summary = "Requests answer 503: the database, the archive, the queue, the conformance check, Key Manager or another service they need cannot run." }
      },
      {
        alert       = "WitnessDeferred"
        expr        = "sum(count_over_time(${local.logs} |= `closing witness deferred to the schedule` [1h])) > 0"
        labels      = { severity = "warning" }
        annotations = { summary = "A sealed closing's witness could not be archived at once; the hourly schedule writes it." }
      },
      {
        alert       = "ScheduleFailed"
        expr        = "sum(count_over_time(${local.logs} |= `schedule failed` [1h])) > 0"
        labels      = { severity = "warning" }
        annotations = { summary = "A schedule (closings, sweep, anchoring, purge) failed; the next run retries." }
      },
      {
        alert       = "QueueConsumerFailures"
        expr        = "sum(count_over_time(${local.logs} |~ `ledger append failed|queued invoice failed` [15m])) > 0"
        labels      = { severity = "warning" }
        annotations = { summary = "A queued message failed and will be retried, then dead-lettered after 5 receives." }
      },
    ]
  }

  dead_letter_queues = [
    scaleway_mnq_sqs_queue.ledger_dead_letters.name,
    scaleway_mnq_sqs_queue.invoice_dead_letters.name,
  ]

  metric_alert_rules = var.dlq_depth_metric == null ? null : {
    name     = "einvoice-dead-letters"
    interval = "1m"
    rules = [
      for queue in local.dead_letter_queues : {
        alert       = "DeadLetteredMessages"
        expr        = "max(${format(var.dlq_depth_metric, queue)}) > 0"
        labels      = { severity = "critical", queue = queue }
        annotations = { summary = "Messages wait in ${queue}: they failed 5 times and will not be retried by themselves." }
      }
    ]
  }
}

resource "terraform_data" "log_alert_rules" {
  triggers_replace = [sha256(yamlencode(local.log_alert_rules)), data.scaleway_cockpit_source.scaleway_logs.url]

  provisioner "local-exec" {
    command = "printf '%s' \"$RULES\" | curl --fail --silent --show-error --max-time 60 -X POST -H \"X-Token: $COCKPIT_TOKEN\" -H 'Content-Type: application/yaml' --data-binary @- \"$RULER_URL\""

    environment = {
      RULES         = yamlencode(local.log_alert_rules)
      RULER_URL     = "${data.scaleway_cockpit_source.scaleway_logs.url}/loki/api/v1/rules/einvoice"
      COCKPIT_TOKEN = scaleway_cockpit_token.rules.secret_key
    }
  }

  depends_on = [scaleway_cockpit_alert_manager.main]
}

resource "terraform_data" "metric_alert_rules" {
  count            = var.dlq_depth_metric == null ? 0 : 1
  triggers_replace = [sha256(yamlencode(local.metric_alert_rules)), data.scaleway_cockpit_source.scaleway_metrics[0].url]

  provisioner "local-exec" {
    command = "printf '%s' \"$RULES\" | curl --fail --silent --show-error --max-time 60 -X POST -H \"X-Token: $COCKPIT_TOKEN\" -H 'Content-Type: application/yaml' --data-binary @- \"$RULER_URL\""

    environment = {
      RULES         = yamlencode(local.metric_alert_rules)
      RULER_URL     = "${data.scaleway_cockpit_source.scaleway_metrics[0].url}/prometheus/config/v1/rules/einvoice"
      COCKPIT_TOKEN = scaleway_cockpit_token.rules.secret_key
    }
  }

  depends_on = [scaleway_cockpit_alert_manager.main]
}
