# The migrations run once per package of the migrate function, at apply time:
# after the database, its secrets and the function's network path exist, and
# before any trigger reaches the other functions (the queue mappings, the
# schedules and the API deployment wait for it). A migration that fails makes
# the function fail, and with it the apply.

resource "aws_lambda_invocation" "migrate" {
  function_name = aws_lambda_function.fn["migrate"].function_name
  input         = jsonencode({})

  triggers = {
    package  = filebase64sha256("${var.package_dir}/migrate.zip")
    database = aws_db_instance.main.resource_id
  }

  depends_on = [
    aws_db_instance.main,
    aws_secretsmanager_secret_version.db_owner_password,
    aws_secretsmanager_secret_version.db_app_password,
    aws_iam_role_policy.fn,
    aws_route_table_association.private,
    aws_nat_gateway.main,
    aws_vpc_endpoint.interface,
    aws_vpc_security_group_egress_rule.functions_https,
    aws_vpc_security_group_egress_rule.functions_database,
    aws_vpc_security_group_ingress_rule.database_from_functions,
    aws_vpc_security_group_ingress_rule.endpoints_from_functions,
  ]
}
