# One EventBridge rule per schedule of app.py, at the manifest's times (UTC).

resource "aws_cloudwatch_event_rule" "schedule" {
  for_each            = local.schedules
  name                = local.function_names[each.key]
  description         = "einvoice ${each.key}"
  schedule_expression = each.value.expression
}

resource "aws_cloudwatch_event_target" "schedule" {
  for_each  = local.schedules
  rule      = aws_cloudwatch_event_rule.schedule[each.key].name
  target_id = each.key
  arn       = aws_lambda_function.fn[each.key].arn

  # Not before the schema exists.
  depends_on = [aws_lambda_invocation.migrate]
}

resource "aws_lambda_permission" "schedule" {
  for_each      = local.schedules
  statement_id  = "AllowEventBridgeSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.key].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.schedule[each.key].arn
}
