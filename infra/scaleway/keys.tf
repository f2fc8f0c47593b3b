# The master key that wraps the per-tenant data keys. Its material never
# leaves Key Manager; the functions ask Key Manager to wrap and unwrap.
# `unprotected = false` (the default, stated) keeps it from being deleted.
resource "scaleway_key_manager_key" "master" {
  name        = "einvoice-master"
  region      = var.region
  project_id  = var.project_id
  usage       = "symmetric_encryption"
  algorithm   = "aes_256_gcm"
  description = "einvoice: wraps the per-tenant data keys"
  unprotected = false
  tags        = ["einvoice"]

  rotation_policy {
    rotation_period = var.master_key_rotation_period
  }
}

locals {
  # Regional ids read "fr-par/<uuid>"; Key Manager calls and IAM conditions
  # take the bare uuid.
  master_key_id = element(split("/", scaleway_key_manager_key.master.id), 1)
}
