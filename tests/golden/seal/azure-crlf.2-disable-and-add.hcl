ui = true
listener "tcp" {
  address     = "[::]:8200"
  tls_disable = 1
}
storage "raft" {
  path = "/vault/data"
}
seal "azurekeyvault" {
  disabled   = "true"
  tenant_id  = "00000000-0000-0000-0000-000000000000"
  vault_name = "kv-vault-pointed"
  key_name   = "vault-unseal-pointed"
}
seal "azurekeyvault" {
  name       = "new"
  tenant_id  = "00000000-0000-0000-0000-000000000000"
  vault_name = "kv-vault-new"
  key_name   = "vault-unseal-new"
}
