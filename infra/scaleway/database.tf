# Managed PostgreSQL 15, reachable only on the Private Network: with a
# private_network block and no load_balancer block the provider creates no
# public endpoint. Encrypted at rest; hourly backups kept 30 days, in fr-par.

resource "random_password" "db_admin" {
  length      = 32
  min_upper   = 2
  min_lower   = 2
  min_numeric = 2
  min_special = 2
  # Scaleway accepts these specials; none needs quoting in an env value.
  override_special = "!#%*()-_=+[]{}:,.?"
}

resource "random_password" "db_owner" {
  length           = 32
  min_upper        = 2
  min_lower        = 2
  min_numeric      = 2
  min_special      = 2
  override_special = "!#%*()-_=+[]{}:,.?"
}

resource "random_password" "db_app" {
  length           = 32
  min_upper        = 2
  min_lower        = 2
  min_numeric      = 2
  min_special      = 2
  override_special = "!#%*()-_=+[]{}:,.?"
}

resource "scaleway_rdb_instance" "main" {
  name              = "einvoice"
  region            = var.region
  engine            = "PostgreSQL-15"
  node_type         = var.db_node_type
  is_ha_cluster     = var.db_ha_cluster
  volume_type       = "sbs_5k"
  volume_size_in_gb = var.db_volume_size_in_gb

  encryption_at_rest = true

  disable_backup            = false
  backup_schedule_frequency = 1  # hours
  backup_schedule_retention = 30 # days
  backup_same_region        = true

  # The instance's first user is a Scaleway admin: kept for break-glass only
  # (its password is in Secret Manager), given to no function.
  user_name = "einvoice_admin"
  password  = random_password.db_admin.result

  private_network {
    pn_id       = scaleway_vpc_private_network.main.id
    enable_ipam = true
  }

  tags = ["einvoice"]
}

resource "scaleway_rdb_database" "main" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "einvoice"
}

# Both roles are plain users (no Scaleway admin rights: no CREATEROLE, no
# CREATEDB). The owner owns every table because it runs the migrations.
resource "scaleway_rdb_user" "owner" {
  instance_id = scaleway_rdb_instance.main.id
  name        = var.db_owner_user
  password    = random_password.db_owner.result
  is_admin    = false
}

resource "scaleway_rdb_user" "app" {
  instance_id = scaleway_rdb_instance.main.id
  name        = var.db_app_user
  password    = random_password.db_app.result
  is_admin    = false
}

# "all" lets the owner create the schema objects. "readonly", set while the
# database is still empty, gives the app role CONNECT and USAGE and nothing
# else (Scaleway grants on existing objects only); every table grant after
# that comes from the migrations. Terraform must never re-apply these levels
# on a migrated database ("readonly" would then grant SELECT on every table,
# schema_migrations and pending sign-ups included): the level drifts to
# "custom" after the migrations, and is ignored from then on.
resource "scaleway_rdb_privilege" "owner" {
  instance_id   = scaleway_rdb_instance.main.id
  user_name     = scaleway_rdb_user.owner.name
  database_name = scaleway_rdb_database.main.name
  permission    = "all"

  lifecycle {
    ignore_changes = [permission]
  }
}

resource "scaleway_rdb_privilege" "app" {
  instance_id   = scaleway_rdb_instance.main.id
  user_name     = scaleway_rdb_user.app.name
  database_name = scaleway_rdb_database.main.name
  permission    = "readonly"

  depends_on = [scaleway_rdb_privilege.owner]

  lifecycle {
    ignore_changes = [permission]
  }
}

locals {
  db_endpoint = scaleway_rdb_instance.main.private_network[0]

  # The instance's own (self-signed) certificate, for verify-full. Scaleway
  # caps every function environment value at 1000 characters and the PEM is
  # about 1,400 to 2,000: it is given in pieces, EINVOICE_DB_CA_PEM_1, _2, ...,
  # which the settings join in order (see docs/deploy/scaleway.md).
  db_ca_pem = scaleway_rdb_instance.main.certificate
  db_ca_env = {
    for i in range(ceil(length(local.db_ca_pem) / 900)) :
    "EINVOICE_DB_CA_PEM_${i + 1}" => substr(local.db_ca_pem, i * 900, 900)
  }
}
