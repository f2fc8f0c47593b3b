# The REST API, imported from openapi.json (python -m infra.aws.openapi writes
# it from app.py's route table): every route to the api function through the
# Lambda proxy integration, application/pdf among the binary media types, and
# the app's security headers on the answers API Gateway makes itself. The CORS
# preflights are kept only when a frontend origin is configured.

locals {
  openapi_template = jsondecode(replace(replace(
    file("${path.module}/openapi.json"),
    "@@API_INVOKE_ARN@@", aws_lambda_function.fn["api"].invoke_arn),
  "@@FRONTEND_ORIGIN@@", var.frontend_origin))

  openapi_body = jsonencode(merge(local.openapi_template, {
    paths = {
      for path, operations in local.openapi_template.paths : path => {
        for method, operation in operations : method => operation
        if method != "options" || var.frontend_origin != ""
      }
    }
  }))
}

resource "aws_api_gateway_rest_api" "api" {
  name                         = "${var.name_prefix}-api"
  body                         = local.openapi_body
  put_rest_api_mode            = "overwrite"
  disable_execute_api_endpoint = var.domain_name != ""

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowApiGateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn["api"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.api.execution_arn}/${var.api_stage_name}/*"
}

resource "aws_api_gateway_deployment" "api" {
  rest_api_id = aws_api_gateway_rest_api.api.id

  triggers = {
    body = sha256(local.openapi_body)
  }

  lifecycle {
    create_before_destroy = true
  }

  # Not before the schema exists.
  depends_on = [aws_lambda_invocation.migrate]
}

# API Gateway writes to CloudWatch Logs through one role per account and region.
data "aws_iam_policy_document" "api_gateway_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "api_gateway_logs" {
  name               = "${var.name_prefix}-api-gateway-logs"
  assume_role_policy = data.aws_iam_policy_document.api_gateway_assume.json
}

resource "aws_iam_role_policy_attachment" "api_gateway_logs" {
  role       = aws_iam_role.api_gateway_logs.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}

resource "aws_api_gateway_account" "main" {
  cloudwatch_role_arn = aws_iam_role.api_gateway_logs.arn
  depends_on          = [aws_iam_role_policy_attachment.api_gateway_logs]
}

resource "aws_cloudwatch_log_group" "api_access" {
  name              = "/aws/apigateway/${var.name_prefix}-api/access"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.platform.arn
}

resource "aws_cloudwatch_log_group" "api_execution" {
  name              = "API-Gateway-Execution-Logs_${aws_api_gateway_rest_api.api.id}/${var.api_stage_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.platform.arn
}

resource "aws_api_gateway_stage" "api" {
  rest_api_id          = aws_api_gateway_rest_api.api.id
  deployment_id        = aws_api_gateway_deployment.api.id
  stage_name           = var.api_stage_name
  xray_tracing_enabled = var.xray_tracing

  # No caller address or user agent: the app's own access log keeps a
  # truncated address, and this log must not keep more.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      extendedRequestId  = "$context.extendedRequestId"
      requestTime        = "$context.requestTime"
      httpMethod         = "$context.httpMethod"
      resourcePath       = "$context.resourcePath"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integration.status"
      integrationLatency = "$context.integration.latency"
      errorType          = "$context.error.responseType"
      errorMessage       = "$context.error.message"
    })
  }

  depends_on = [aws_api_gateway_account.main, aws_cloudwatch_log_group.api_execution]
}

resource "aws_api_gateway_method_settings" "api" {
  rest_api_id = aws_api_gateway_rest_api.api.id
  stage_name  = aws_api_gateway_stage.api.stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    logging_level          = "ERROR"
    data_trace_enabled     = false # would log request and response bodies
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
  }
}

resource "aws_api_gateway_domain_name" "api" {
  count                    = var.domain_name != "" ? 1 : 0
  domain_name              = var.domain_name
  regional_certificate_arn = var.certificate_arn
  security_policy          = "TLS_1_2"

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    precondition {
      condition     = var.certificate_arn != ""
      error_message = "domain_name needs certificate_arn (an ACM certificate issued in eu-west-3)."
    }
  }
}

resource "aws_api_gateway_base_path_mapping" "api" {
  count       = var.domain_name != "" ? 1 : 0
  api_id      = aws_api_gateway_rest_api.api.id
  stage_name  = aws_api_gateway_stage.api.stage_name
  domain_name = aws_api_gateway_domain_name.api[0].domain_name
}
