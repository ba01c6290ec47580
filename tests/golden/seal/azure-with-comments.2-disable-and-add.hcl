disable_mlock = true
plugin_directory = "/vault/data/plugins"
ui = false
api_addr = "http://POD_IP:8200"
cluster_addr = "https://HOSTNAME.vault-internal:8201"

listener "tcp" {
    tls_disable = 1
    address = "[::]:8200"
    cluster_address = "[::]:8201"
}

storage "raft" {
    path = "/vault/data"
    node_id = "HOSTNAME"
}

// The unseal key lives in the platform team's key vault.
seal "azurekeyvault" {
    disabled       = "true"
    # managed identity of the AKS node pool
    tenant_id      = "00000000-0000-0000-0000-000000000000"
    client_id      = "11111111-1111-1111-1111-111111111111"
    vault_name     = "kv-vault-pointed"   # keep in sync with terraform
    key_name       = "vault-unseal-pointed"
}
seal "azurekeyvault" {
    name           = "new"
    client_id      = "11111111-1111-1111-1111-111111111111"
    tenant_id      = "00000000-0000-0000-0000-000000000000"
    vault_name     = "kv-vault-new"
    key_name       = "vault-unseal-new"
}

service_registration "kubernetes" {}
