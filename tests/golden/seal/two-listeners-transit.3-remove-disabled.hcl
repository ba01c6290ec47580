ui = true

listener "tcp" {
  address         = "[::]:8200"
  cluster_address = "[::]:8201"
  tls_disable     = 1
}

listener "tcp" {
  address     = "127.0.0.1:8210"
  tls_disable = 1
  telemetry {
    unauthenticated_metrics_access = true
  }
}

storage "raft" {
  path = "/vault/data"
  retry_join {
    leader_api_addr = "http://vault-0.vault-internal:8200"
  }
}

seal "transit" {
  name            = "new"
  disable_renewal = "true"
  address         = "https://kms-new.example.com:8200"
  token           = "s.PLANTEDnewToken22222222222"
  mount_path      = "transit/"
  key_name        = "new-unseal"
}
