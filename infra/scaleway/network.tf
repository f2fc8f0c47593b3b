# The functions reach PostgreSQL over this Private Network only. A function
# attached to it still reaches the Internet (Object Storage, Key Manager,
# Queues, SMTP, anchoring) through its public side; nothing enters by it.
resource "scaleway_vpc_private_network" "main" {
  name   = "einvoice"
  region = var.region
  tags   = ["einvoice"]

  # Room for one address per function instance (Scaleway gives each its own).
  ipv4_subnet {
    subnet = "172.16.32.0/22"
  }
}
