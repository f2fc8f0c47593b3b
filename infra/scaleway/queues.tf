# Scaleway Queues (SQS API) in fr-par, each queue with its dead-letter queue:
# a message received max_receive_count times without being deleted moves
# there (5, as locally). Visibility timeouts exceed the consumer's timeout.

resource "scaleway_mnq_sqs" "main" {
  project_id = var.project_id
  region     = var.region
}

# Terraform's own credentials: manage queues, neither publish nor receive.
resource "scaleway_mnq_sqs_credentials" "terraform" {
  project_id = scaleway_mnq_sqs.main.project_id
  region     = var.region
  name       = "einvoice-terraform"

  permissions {
    can_manage  = true
    can_publish = false
    can_receive = false
  }
}

# The functions' credentials, separate from the S3 keys: the api publishes
# bulk invoices; the triggers receive with Scaleway's own credentials, so no
# function receives or manages. Queue credentials cannot be narrowed to one
# queue: they cover the project's queues.
resource "scaleway_mnq_sqs_credentials" "functions" {
  project_id = scaleway_mnq_sqs.main.project_id
  region     = var.region
  name       = "einvoice-functions"

  permissions {
    can_manage  = false
    can_publish = true
    can_receive = false
  }
}

resource "scaleway_mnq_sqs_queue" "ledger_dead_letters" {
  project_id      = scaleway_mnq_sqs.main.project_id
  region          = var.region
  name            = "${var.ledger_queue}-dead-letters"
  sqs_endpoint    = scaleway_mnq_sqs.main.endpoint
  access_key      = scaleway_mnq_sqs_credentials.terraform.access_key
  secret_key      = scaleway_mnq_sqs_credentials.terraform.secret_key
  message_max_age = 1209600 # 14 days, the most: time for the operator to look
}

resource "scaleway_mnq_sqs_queue" "ledger" {
  project_id                 = scaleway_mnq_sqs.main.project_id
  region                     = var.region
  name                       = var.ledger_queue
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.terraform.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.terraform.secret_key
  visibility_timeout_seconds = 60 # append-ledger times out at 30 s
  message_max_age            = 1209600

  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.ledger_dead_letters.id
    max_receive_count = 5
  }
}

resource "scaleway_mnq_sqs_queue" "invoice_dead_letters" {
  project_id      = scaleway_mnq_sqs.main.project_id
  region          = var.region
  name            = "${var.invoice_queue}-dead-letters"
  sqs_endpoint    = scaleway_mnq_sqs.main.endpoint
  access_key      = scaleway_mnq_sqs_credentials.terraform.access_key
  secret_key      = scaleway_mnq_sqs_credentials.terraform.secret_key
  message_max_age = 1209600
}

resource "scaleway_mnq_sqs_queue" "invoice" {
  project_id                 = scaleway_mnq_sqs.main.project_id
  region                     = var.region
  name                       = var.invoice_queue
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.terraform.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.terraform.secret_key
  visibility_timeout_seconds = 240 # issue-invoice times out at 120 s
  message_max_age            = 1209600

  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.invoice_dead_letters.id
    max_receive_count = 5
  }
}
