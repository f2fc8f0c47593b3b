# Every condition the code says "alerts the operator" ends here, on one SNS
# topic mailed to alarm_email:
#  - the service's metrics (Powertools, namespace "einvoice", dimension
#    service=einvoice): archive failures, anchoring failures, witness alarms,
#    rate-limit refusals above a threshold;
#  - the lines the edge logs when it answers "the operator is alerted"
#    (chalicelib/entrypoints/answers.py) and a deferred witness, counted by a
#    metric filter on every function's log group;
#  - a message in a dead-letter queue; an error of any function; a 5xx of the
#    API; a schedule that has not run for longer than its period allows.

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = aws_kms_key.platform.arn
}

data "aws_iam_policy_document" "alarms_topic" {
  statement {
    sid       = "CloudWatchAlarmsPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alarms.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sns_topic_policy" "alarms" {
  arn    = aws_sns_topic.alarms.arn
  policy = data.aws_iam_policy_document.alarms_topic.json
}

resource "aws_sns_topic_subscription" "alarm_email" {
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  alarm_actions = [aws_sns_topic.alarms.arn]

  service_metric_alarms = {
    ArchiveFailures = {
      threshold   = 0
      description = "An invoice or a witness could not be put under lock: no invoice is issued until the archive can keep it 11 years."
    }
    AnchoringFailures = {
      threshold   = 0
      description = "A closing could not be anchored (OpenTimestamps or the TSA); anchor-retries tries again."
    }
    WitnessAlarms = {
      threshold   = 0
      description = "A chain contradicts its newest witness in the archive: entries were removed or rewritten."
    }
    ArchiveMissing = {
      threshold   = 0
      description = "An archived invoice's recorded object version could not be read back (gone, a delete marker, an unknown version id): its download answers 503."
    }
    RateLimitRefusals = {
      threshold   = var.rate_limit_refusals_threshold
      description = "Many requests refused by the rate limits: guessing, or limits set too low."
    }
  }

  # The exact messages the code logs when it tells the caller "the operator is
  # alerted" (a test checks each one is still logged by chalicelib).
  operator_alert_messages = [
    "archive refused",
    "archive integrity check failed",
    "archive version missing",
    "service unavailable",
    "schematron unavailable",
    "keys provider unavailable",
    "secret unavailable",
    "database unavailable",
    "archive unavailable",
    "queue unavailable",
    "closing witness deferred to the schedule",
  ]
  operator_alert_pattern = "{ $.level = \"ERROR\" && (${join(" || ", [for m in local.operator_alert_messages : "$.message = \"${m}\""])}) }"
}

resource "aws_cloudwatch_metric_alarm" "service" {
  for_each            = local.service_metric_alarms
  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = "einvoice"
  metric_name         = each.key
  dimensions          = { service = "einvoice" }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_log_metric_filter" "operator_alerts" {
  for_each       = local.functions
  name           = "${local.function_names[each.key]}-operator-alerts"
  log_group_name = aws_cloudwatch_log_group.fn[each.key].name
  pattern        = local.operator_alert_pattern

  metric_transformation {
    name          = "OperatorAlerts"
    namespace     = "einvoice/logs"
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "operator_alerts" {
  alarm_name          = "${var.name_prefix}-operator-alerts"
  alarm_description   = "A function logged a condition the caller was told the operator is alerted about (archive refused or tampered, a service unavailable, a witness deferred)."
  namespace           = "einvoice/logs"
  metric_name         = "OperatorAlerts"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions

  depends_on = [aws_cloudwatch_log_metric_filter.operator_alerts]
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = local.queues
  alarm_name          = "${var.name_prefix}-${each.key}-dead-letters"
  alarm_description   = "DeadLetteredMessages: messages of the ${each.key} queue failed 5 times and wait in ${aws_sqs_queue.dead_letters[each.key].name}."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dead_letters[each.key].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each            = local.functions
  alarm_name          = "${local.function_names[each.key]}-errors"
  alarm_description   = "The ${each.key} function failed (an unhandled error or a timeout)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

# No data at all counts as not having run.
resource "aws_cloudwatch_metric_alarm" "schedule_silent" {
  for_each            = local.schedules
  alarm_name          = "${local.function_names[each.key]}-not-running"
  alarm_description   = "The ${each.key} schedule (${each.value.expression}) has not run in ${each.value.silence_alarm_seconds / 60} minutes."
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = each.value.silence_alarm_seconds
  evaluation_periods  = 1
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}

resource "aws_cloudwatch_metric_alarm" "api_5xx" {
  alarm_name          = "${var.name_prefix}-api-5xx"
  alarm_description   = "The API answered 5xx (a fault of ours, never the caller's)."
  namespace           = "AWS/ApiGateway"
  metric_name         = "5XXError"
  dimensions          = { ApiName = aws_api_gateway_rest_api.api.name, Stage = aws_api_gateway_stage.api.stage_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.alarm_actions
  ok_actions          = local.alarm_actions
}
