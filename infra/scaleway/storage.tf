# The archive: versioning, Object Lock, COMPLIANCE default retention of 11
# years. Object Lock can only be enabled when the bucket is created.
resource "scaleway_object_bucket" "archive" {
  name                = var.archive_bucket
  region              = var.region
  object_lock_enabled = true
  force_destroy       = false

  versioning {
    enabled = true
  }

  tags = {
    app = "einvoice"
  }
}

resource "scaleway_object_bucket_lock_configuration" "archive" {
  bucket = scaleway_object_bucket.archive.name
  region = var.region

  rule {
    default_retention {
      mode  = "COMPLIANCE"
      years = 11
    }
  }
}

# Scaleway's bucket policies (version 2023-04-17) are allow-lists: whatever a
# statement does not allow is refused to every principal, and a Deny
# statement has no effect. So the refusals asked of this bucket are made by
# allowing nobody the action:
#   s3:DeleteObject (a delete without a version id, i.e. a delete marker);
#   s3:PutBucketVersioning, s3:PutBucketObjectLockConfiguration;
#   s3:PutObjectLegalHold, s3:PutLifecycleConfiguration, ACLs, CORS, website;
#   s3:DeleteObjectVersion, except to the retention purge's application.
# s3:PutObjectRetention is allowed to the writers: COMPLIANCE mode itself
# refuses, to everyone, any retention shortened or its mode changed, so the
# only change left is an extension, which the archive makes when a retry
# reuses a version (chalicelib/adapters/archive.py), and which a put naming
# its own retention may need. Condition keys Scaleway offers are only
# aws:SourceIp, aws:Referer, aws:CurrentTime, aws:EpochTime and s3:prefix:
# nothing can test a version id or a retention date.
locals {
  bucket_objects = "${scaleway_object_bucket.archive.name}/*"

  archive_bucket_policy = {
    Version = "2023-04-17"
    Id      = "einvoice-archive"
    Statement = [
      {
        Sid       = "DeployerReadsTheBucketConfiguration"
        Effect    = "Allow"
        Principal = { SCW = var.deployer_principals }
        Action = [
          "s3:GetBucketAcl",
          "s3:GetBucketCORS",
          "s3:GetBucketLocation",
          "s3:GetBucketObjectLockConfiguration",
          "s3:GetBucketTagging",
          "s3:GetBucketVersioning",
          "s3:GetBucketWebsite",
          "s3:GetLifecycleConfiguration",
          "s3:ListBucket",
          "s3:PutBucketTagging",
        ]
        Resource = [scaleway_object_bucket.archive.name]
      },
      {
        Sid    = "WritersCheckTheBucket"
        Effect = "Allow"
        Principal = { SCW = [
          "application_id:${scaleway_iam_application.invoicing.id}",
          "application_id:${scaleway_iam_application.closings.id}",
        ] }
        Action = [
          "s3:GetBucketObjectLockConfiguration",
          "s3:GetBucketVersioning",
          "s3:ListBucket",
        ]
        Resource = [scaleway_object_bucket.archive.name]
      },
      {
        Sid    = "WritersPutAndReadLockedVersions"
        Effect = "Allow"
        Principal = { SCW = [
          "application_id:${scaleway_iam_application.invoicing.id}",
          "application_id:${scaleway_iam_application.closings.id}",
        ] }
        Action = [
          "s3:GetObject",
          "s3:GetObjectRetention",
          "s3:GetObjectVersion",
          "s3:PutObject",
          "s3:PutObjectRetention",
        ]
        Resource = [local.bucket_objects]
      },
      {
        Sid       = "HealthProbeSeesTheBucket"
        Effect    = "Allow"
        Principal = { SCW = ["application_id:${scaleway_iam_application.probe.id}"] }
        Action    = ["s3:ListBucket"]
        Resource  = [scaleway_object_bucket.archive.name]
      },
      {
        Sid       = "RetentionPurgeListsVersions"
        Effect    = "Allow"
        Principal = { SCW = ["application_id:${scaleway_iam_application.retention_purge.id}"] }
        Action    = ["s3:ListBucket", "s3:ListBucketVersions"]
        Resource  = [scaleway_object_bucket.archive.name]
      },
      {
        Sid       = "OnlyTheRetentionPurgeDeletesVersions"
        Effect    = "Allow"
        Principal = { SCW = ["application_id:${scaleway_iam_application.retention_purge.id}"] }
        Action    = ["s3:DeleteObjectVersion", "s3:GetObjectRetention"]
        Resource  = [local.bucket_objects]
      },
    ]
  }
}

resource "scaleway_object_bucket_policy" "archive" {
  bucket = scaleway_object_bucket.archive.name
  region = var.region
  policy = jsonencode(local.archive_bucket_policy)

  # The lock and versioning are in place before anyone is refused the right
  # to change them.
  depends_on = [scaleway_object_bucket_lock_configuration.archive]
}
