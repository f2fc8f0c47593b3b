# Terraform for AWS Paris (eu-west-3), written by hand: every function of
# deploy/manifest.py, its trigger, its own least-privilege role, the Object
# Lock archive, the queues, PostgreSQL 15 and the alarms. docs/deploy/aws.md
# walks through it from an empty account.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "aws" {
  region              = var.region
  allowed_account_ids = length(var.allowed_account_ids) > 0 ? var.allowed_account_ids : null

  default_tags {
    tags = merge(var.tags, { application = "einvoice", managed_by = "terraform" })
  }
}

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}
