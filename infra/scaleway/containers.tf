# The units of deploy/manifest.py that run as a Serverless Container on
# Scaleway (scaleway_runs_as = "container"): the conformance check only.
# saxonche has no musllinux wheel and the Python function runtimes are
# Alpine (musl), so its package is a glibc container build context
# (Dockerfile and serve.py at the root of dist/scaleway/conformance-check.zip)
# that the operator builds and pushes to the registry below before the
# container can be created (docs/deploy/scaleway.md, "From an empty project").

# Private: pulling an image needs the project's credentials.
resource "scaleway_registry_namespace" "main" {
  name        = var.registry_namespace
  description = "einvoice: the conformance-check image"
  is_public   = false
  region      = var.region
  project_id  = var.project_id
}

resource "scaleway_container_namespace" "main" {
  name        = "einvoice"
  description = "einvoice: the units deploy/manifest.py runs as containers"
  region      = var.region
  project_id  = var.project_id
  tags        = ["einvoice"]
  # No variable: the conformance check reads no setting, holds no secret.
}

locals {
  # The only reference the container accepts: this registry, the package's
  # SHA-256 as tag, so the image is the one built from the zip Terraform sees.
  conformance_check_expected_image = "${scaleway_registry_namespace.main.endpoint}/conformance-check:${filesha256("${var.package_dir}/conformance-check.zip")}"
  conformance_check_image          = var.conformance_check_image == null ? "" : var.conformance_check_image
}

# Private: the platform refuses a caller without an X-Auth-Token it accepts
# (serve.py checks nothing itself: SERVE_AUTH_TOKEN stays unset). Callers:
# api and issue-invoice, with the secret key of scaleway_iam_api_key
# .conformance_callers (iam.tf), allowed ContainersPrivateAccess. Not a
# scaleway_container_token: the provider deprecates that resource in favour
# of IAM, and the permission set opens every private container of the
# project, which is this one only (a test keeps it the only container).
#
# No Private Network: it reaches no database, and Scaleway routes only a
# container's outgoing traffic through one (callers come by its public
# endpoint whatever it is attached to).
resource "scaleway_container" "conformance_check" {
  name         = "conformance-check"
  namespace_id = scaleway_container_namespace.main.id
  description  = "EN 16931 and BR-FR schematrons (saxonche), called by issuing"
  tags         = ["einvoice"]
  image        = local.conformance_check_image
  port         = 8080 # serve.py listens on $PORT, 8080 in the Dockerfile
  privacy      = "private"
  protocol     = "http1"

  https_connections_only = true
  timeout                = 30
  # 1024 MB as the provider counts them (10^6 bytes), with the vCPU Scaleway
  # pairs with that memory (560 mvCPU).
  memory_limit_bytes = 1024000000
  cpu_limit          = 560
  min_scale          = var.conformance_check_min_scale
  max_scale          = 10

  # serve.py answers one request at a time (as a function instance would):
  # one request per instance, further ones start instances.
  scaling_option {
    concurrent_requests_threshold = 1
  }

  lifecycle {
    precondition {
      condition     = local.conformance_check_image == local.conformance_check_expected_image
      error_message = "Set conformance_check_image to the image built from the current dist/scaleway/conformance-check.zip and pushed to this registry namespace, tagged with the zip's SHA-256 (docs/deploy/scaleway.md)."
    }
  }
}
