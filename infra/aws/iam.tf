# One role per function, allowed what its capabilities need and nothing else
# (the same capabilities that decide its environment, functions.tf). Read
# from the code:
#  - the archive (chalicelib/adapters/archive.py): check_ready reads the
#    bucket's versioning and lock; put heads the key (HeadObject: s3:GetObject,
#    or s3:GetObjectVersion with a version id, s3:GetObjectRetention for the
#    lock fields; s3:ListBucket so a missing key answers 404, not 403), puts it
#    under lock (s3:PutObject) and may extend a retention
#    (s3:PutObjectRetention); get reads a version; newest lists a prefix.
#    Invoices are tenants/*/invoices/* (usecases/archive_invoice.py), witnesses
#    tenants/*/witness/* (domain/witness.py);
#  - the invoice queue: runtime.invoice_queue() asks for the queue's URL and
#    sends batches (api, POST /invoice-batches); the consumers only receive and
#    delete, through their event source mapping;
#  - the conformance check: invoked by issuing only (api, issue-invoice).

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "fn" {
  for_each             = local.functions
  name                 = local.function_names[each.key]
  description          = "einvoice ${each.key}: only what its capabilities need"
  assume_role_policy   = data.aws_iam_policy_document.lambda_assume.json
  max_session_duration = 3600
}

# The network interfaces of a function in a VPC (AWS's own policy: those EC2
# actions cannot be limited to a resource).
resource "aws_iam_role_policy_attachment" "vpc_access" {
  for_each   = local.functions
  role       = aws_iam_role.fn[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role_policy_attachment" "xray" {
  for_each   = { for name, f in local.functions : name => f if var.xray_tracing }
  role       = aws_iam_role.fn[each.key].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"
}

locals {
  archive_object_actions = [
    "s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention",
    "s3:PutObjectRetention",
  ]

  archive_purge_statements = [
    {
      Sid      = "ArchivePurgeList"
      Effect   = "Allow"
      Action   = ["s3:ListBucket", "s3:ListBucketVersions"]
      Resource = [aws_s3_bucket.archive.arn]
    },
    {
      Sid      = "ArchivePurge"
      Effect   = "Allow"
      Action   = ["s3:GetObjectRetention", "s3:DeleteObjectVersion"]
      Resource = ["${aws_s3_bucket.archive.arn}/tenants/*"]
    },
  ]

  statements_of_capability = {
    database       = []
    database_owner = []
    archive = [{
      Sid      = "ArchiveBucket"
      Effect   = "Allow"
      Action   = ["s3:ListBucket", "s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"]
      Resource = [aws_s3_bucket.archive.arn]
    }]
    archive_probe = [{
      Sid      = "ArchiveProbe"
      Effect   = "Allow"
      Action   = ["s3:ListBucket"] # HeadBucket
      Resource = [aws_s3_bucket.archive.arn]
    }]
    archive_invoices = [{
      Sid      = "ArchiveInvoices"
      Effect   = "Allow"
      Action   = local.archive_object_actions
      Resource = ["${aws_s3_bucket.archive.arn}/tenants/*/invoices/*"]
    }]
    archive_witness = [{
      Sid      = "ArchiveWitnesses"
      Effect   = "Allow"
      Action   = local.archive_object_actions
      Resource = ["${aws_s3_bucket.archive.arn}/tenants/*/witness/*"]
    }]
    # Only when the operator turns the archive purge on; the bucket policy
    # refuses s3:DeleteObjectVersion to every other principal.
    archive_purge = [for statement in local.archive_purge_statements : statement if var.archive_purge_enabled]
    invoice_queue_send = [
      {
        Sid      = "InvoiceQueueSend"
        Effect   = "Allow"
        Action   = ["sqs:GetQueueUrl", "sqs:SendMessage"]
        Resource = [aws_sqs_queue.main["invoice"].arn]
      },
      {
        Sid       = "InvoiceQueueEncrypt"
        Effect    = "Allow"
        Action    = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource  = [aws_kms_key.platform.arn]
        Condition = { StringEquals = { "kms:ViaService" = "sqs.${var.region}.amazonaws.com" } }
      },
    ]
    ledger_queue_consume = [
      {
        Sid      = "LedgerQueueConsume"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
        Resource = [aws_sqs_queue.main["ledger"].arn]
      },
      {
        Sid       = "LedgerQueueDecrypt"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [aws_kms_key.platform.arn]
        Condition = { StringEquals = { "kms:ViaService" = "sqs.${var.region}.amazonaws.com" } }
      },
    ]
    invoice_queue_consume = [
      {
        Sid      = "InvoiceQueueConsume"
        Effect   = "Allow"
        Action   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
        Resource = [aws_sqs_queue.main["invoice"].arn]
      },
      {
        Sid       = "InvoiceQueueDecrypt"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [aws_kms_key.platform.arn]
        Condition = { StringEquals = { "kms:ViaService" = "sqs.${var.region}.amazonaws.com" } }
      },
    ]
    # Wrap and unwrap the per-tenant data keys of sealed columns.
    field_keys = [{
      Sid      = "DataKeys"
      Effect   = "Allow"
      Action   = ["kms:Encrypt", "kms:Decrypt"]
      Resource = [aws_kms_key.data_keys.arn]
    }]
    conformance_invoke = [{
      Sid      = "ConformanceCheck"
      Effect   = "Allow"
      Action   = ["lambda:InvokeFunction"]
      Resource = ["arn:${local.partition}:lambda:${var.region}:${local.account_id}:function:${local.function_names["conformance-check"]}"]
    }]
    mail        = []
    closing_key = []
    anchoring   = []
    web         = []
  }

  function_secrets = {
    for name, f in local.functions :
    name => flatten([for capability in f.capabilities : lookup(local.secrets_of_capability, capability, [])])
  }

  function_statements = {
    for name, f in local.functions : name => concat(
      [{
        Sid      = "OwnLogGroup"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.fn[name].arn}:*"]
      }],
      [for statement in [
        {
          Sid      = "OwnSecrets"
          Effect   = "Allow"
          Action   = ["secretsmanager:GetSecretValue"]
          Resource = local.function_secrets[name]
        },
        {
          Sid       = "OwnSecretsDecrypt"
          Effect    = "Allow"
          Action    = ["kms:Decrypt"]
          Resource  = [aws_kms_key.platform.arn]
          Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${var.region}.amazonaws.com" } }
        },
      ] : statement if length(local.function_secrets[name]) > 0],
      flatten([for capability in f.capabilities : local.statements_of_capability[capability]]),
    )
  }
}

resource "aws_iam_role_policy" "fn" {
  for_each = local.functions
  name     = "least-privilege"
  role     = aws_iam_role.fn[each.key].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.function_statements[each.key]
  })
}
