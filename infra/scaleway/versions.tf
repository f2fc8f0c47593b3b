# Scaleway fr-par. Every argument below was checked against the provider's own
# docs and schema (scaleway/terraform-provider-scaleway, v2.81). 2.75 is the
# floor: it removed the namespace's `activate_vpc_integration` (every namespace
# now takes a Private Network per function, `private_network_id`).
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    scaleway = {
      source  = "scaleway/scaleway"
      version = ">= 2.75.0, < 3.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6.0, < 4.0.0"
    }
  }
}

provider "scaleway" {
  region     = var.region
  zone       = "${var.region}-1"
  project_id = var.project_id
}
