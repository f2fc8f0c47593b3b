# Running the migrations at deploy. Terraform has no resource that invokes a
# Scaleway function (the provider's Terraform "actions" need Terraform 1.14
# and none calls a function), so a terraform_data runs curl on the deploying
# machine: a POST to the private migrate function with a token scoped to it.
# It runs again whenever migrate.zip changes (the migrations are in it) or the
# function is replaced, and before any other function is deployed (they
# depend on it), so new code meets the schema it expects. curl --fail makes
# the apply fail when the function answers 4xx/5xx. The function runs on the
# Private Network: the deploying machine needs no route to the database.
resource "scaleway_function_token" "migrate" {
  function_id = scaleway_function.migrate.id
  region      = var.region
  description = "terraform apply runs the migrations"
}

resource "terraform_data" "migrate" {
  triggers_replace = [
    filesha256("${var.package_dir}/migrate.zip"),
    scaleway_function.migrate.id,
  ]

  provisioner "local-exec" {
    command = "curl --fail --silent --show-error --max-time 330 -X POST -H \"X-Auth-Token: $MIGRATE_TOKEN\" -H 'Content-Type: application/json' --data '{}' \"https://$MIGRATE_HOST/\""

    environment = {
      MIGRATE_HOST  = scaleway_function.migrate.domain_name
      MIGRATE_TOKEN = scaleway_function_token.migrate.token
    }
  }
}
