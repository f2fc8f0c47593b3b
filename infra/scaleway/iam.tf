# One IAM application per group of functions that share a need, each with the
# permission sets that need and no more. Object Storage permission sets are
# project-wide: the bucket policy (storage.tf) narrows them on the archive,
# and a dedicated project keeps them off any other bucket.

# api, issue-invoice, archive-sweep: archive invoices and witnesses, read them
# back, and wrap/unwrap data keys with the master key (that key only).
resource "scaleway_iam_application" "invoicing" {
  name        = "einvoice-invoicing"
  description = "api, issue-invoice, archive-sweep: archive writes and the master key"
  tags        = ["einvoice"]
}

resource "scaleway_iam_policy" "invoicing" {
  name           = "einvoice-invoicing"
  application_id = scaleway_iam_application.invoicing.id

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["ObjectStorageBucketsRead", "ObjectStorageObjectsRead", "ObjectStorageObjectsWrite"]
  }

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["KeyManagerKeyDecrypt", "KeyManagerKeyEncrypt"]
    condition            = "resource.id == \"${local.master_key_id}\""
  }
}

resource "scaleway_iam_api_key" "invoicing" {
  application_id     = scaleway_iam_application.invoicing.id
  description        = "einvoice functions: api, issue-invoice, archive-sweep"
  default_project_id = var.project_id
}

# scheduled-closings: witnesses in the archive; no master key (closings read
# no sealed column).
resource "scaleway_iam_application" "closings" {
  name        = "einvoice-closings"
  description = "scheduled-closings: witness writes"
  tags        = ["einvoice"]
}

resource "scaleway_iam_policy" "closings" {
  name           = "einvoice-closings"
  application_id = scaleway_iam_application.closings.id

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["ObjectStorageBucketsRead", "ObjectStorageObjectsRead", "ObjectStorageObjectsWrite"]
  }
}

resource "scaleway_iam_api_key" "closings" {
  application_id     = scaleway_iam_application.closings.id
  description        = "einvoice function: scheduled-closings"
  default_project_id = var.project_id
}

# health: whether the bucket answers (HeadBucket), nothing more.
resource "scaleway_iam_application" "probe" {
  name        = "einvoice-probe"
  description = "health: sees the archive bucket"
  tags        = ["einvoice"]
}

resource "scaleway_iam_policy" "probe" {
  name           = "einvoice-probe"
  application_id = scaleway_iam_application.probe.id

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["ObjectStorageBucketsRead"]
  }
}

resource "scaleway_iam_api_key" "probe" {
  application_id     = scaleway_iam_application.probe.id
  description        = "einvoice function: health"
  default_project_id = var.project_id
}

# retention-purge: the only principal the bucket policy lets delete a
# version (COMPLIANCE refuses it until the version's retain-until date). Its
# key exists only when var.retention_purge_archive_key is set: today's purge
# touches the database only.
resource "scaleway_iam_application" "retention_purge" {
  name        = "einvoice-retention-purge"
  description = "retention-purge: deletes archive versions past their retention"
  tags        = ["einvoice"]
}

resource "scaleway_iam_policy" "retention_purge" {
  name           = "einvoice-retention-purge"
  application_id = scaleway_iam_application.retention_purge.id

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["ObjectStorageBucketsRead", "ObjectStorageObjectsDelete"]
  }
}

resource "scaleway_iam_api_key" "retention_purge" {
  count              = var.retention_purge_archive_key ? 1 : 0
  application_id     = scaleway_iam_application.retention_purge.id
  description        = "einvoice function: retention-purge"
  default_project_id = var.project_id
}

# api and issue-invoice: call the conformance-check container (private). The
# permission set covers every private container of the project; there is one
# (containers.tf).
resource "scaleway_iam_application" "conformance_callers" {
  name        = "einvoice-conformance-callers"
  description = "api, issue-invoice: call the private conformance-check container"
  tags        = ["einvoice"]
}

resource "scaleway_iam_policy" "conformance_callers" {
  name           = "einvoice-conformance-callers"
  application_id = scaleway_iam_application.conformance_callers.id

  rule {
    project_ids          = [var.project_id]
    permission_set_names = ["ContainersPrivateAccess"]
  }
}

resource "scaleway_iam_api_key" "conformance_callers" {
  application_id     = scaleway_iam_application.conformance_callers.id
  description        = "einvoice functions: api, issue-invoice (X-Auth-Token of conformance-check)"
  default_project_id = var.project_id
}
