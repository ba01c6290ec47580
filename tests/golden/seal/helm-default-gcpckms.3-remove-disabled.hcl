ui = true

listener "tcp" {
  tls_disable = 1
  address = "[::]:8200"
  cluster_address = "[::]:8201"
  # Enable unauthenticated metrics access (necessary for Prometheus Operator)
  #telemetry {
  #  unauthenticated_metrics_access = "true"
  #}
}

storage "raft" {
  path = "/vault/data"
}

service_registration "kubernetes" {}

seal "gcpckms" {
   name        = "new"
   project     = "vault-new"
   region      = "global"
   key_ring    = "new-kr"
   crypto_key  = "new-key"
}
