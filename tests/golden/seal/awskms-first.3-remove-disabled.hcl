seal "awskms" {
  name       = "new"
  region     = "eu-west-1"
  kms_key_id = "alias/vault-new"
}
ui = true
listener "tcp" {
  address     = "[::]:8200"
  tls_disable = 1
}
storage "raft" {
  path = "/vault/data"
}
