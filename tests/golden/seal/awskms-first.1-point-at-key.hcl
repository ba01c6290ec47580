seal "awskms" {
  region     = "eu-central-1"
  kms_key_id = "alias/vault-pointed"
}
ui = true
listener "tcp" {
  address     = "[::]:8200"
  tls_disable = 1
}
storage "raft" {
  path = "/vault/data"
}
