# The ledger and invoice queues of app.py, each with its dead-letter queue
# (after 5 receives), encrypted with the platform key. A message stays
# invisible 6 times its consumer's timeout, as Lambda advises, so a slow batch
# is never handed to a second consumer while the first still works on it.

resource "aws_sqs_queue" "dead_letters" {
  for_each                          = local.queues
  name                              = "${each.value.name}-dead-letters"
  message_retention_seconds         = 1209600 # 14 days, the most SQS keeps
  kms_master_key_id                 = aws_kms_key.platform.arn
  kms_data_key_reuse_period_seconds = 3600
}

resource "aws_sqs_queue" "main" {
  for_each                          = local.queues
  name                              = each.value.name
  visibility_timeout_seconds        = 6 * local.functions[each.value.consumer].timeout
  message_retention_seconds         = 345600 # 4 days
  kms_master_key_id                 = aws_kms_key.platform.arn
  kms_data_key_reuse_period_seconds = 3600

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letters[each.key].arn
    maxReceiveCount     = 5
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letters" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.dead_letters[each.key].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

data "aws_iam_policy_document" "queue" {
  for_each = local.queues

  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.main[each.key].arn]
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

  # Producers outside this configuration (the ledger queue takes entries from
  # other systems of the account); they need kms:GenerateDataKey on the
  # platform key too.
  dynamic "statement" {
    for_each = each.key == "ledger" && length(var.ledger_queue_producer_arns) > 0 ? [1] : []
    content {
      sid       = "LedgerProducers"
      actions   = ["sqs:SendMessage", "sqs:GetQueueUrl"]
      resources = [aws_sqs_queue.main[each.key].arn]
      principals {
        type        = "AWS"
        identifiers = var.ledger_queue_producer_arns
      }
    }
  }
}

resource "aws_sqs_queue_policy" "main" {
  for_each  = local.queues
  queue_url = aws_sqs_queue.main[each.key].id
  policy    = data.aws_iam_policy_document.queue[each.key].json
}

# Every queue hands its batches to its consumer with ReportBatchItemFailures:
# the handlers report the failed messages and only those are retried
# (without it a failed message would be deleted with its batch).
resource "aws_lambda_event_source_mapping" "queue" {
  for_each                = local.queues
  event_source_arn        = aws_sqs_queue.main[each.key].arn
  function_name           = aws_lambda_function.fn[each.value.consumer].arn
  batch_size              = each.value.batch_size
  function_response_types = ["ReportBatchItemFailures"]

  scaling_config {
    maximum_concurrency = var.queue_max_concurrency
  }

  # Not before the schema exists.
  depends_on = [aws_lambda_invocation.migrate, aws_iam_role_policy.fn]
}
