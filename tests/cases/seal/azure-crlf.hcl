ui = true
listener "tcp" {
  address     = "[::]:8200"
  tls_disable = 1
}
storage "raft" {
  path = "/vault/data"
}
seal "azurekeyvault" {
  tenant_id  = "00000000-0000-0000-0000-000000000000"
  vault_name = "kv-vault-old"
  key_name   = "vault-unseal-old"
}
