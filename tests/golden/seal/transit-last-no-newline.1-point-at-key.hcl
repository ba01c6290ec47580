storage "raft" {
  path = "/vault/data"
}
seal "transit" {
  address    = "https://kms-pointed.example.com:8200"
  token      = "s.PLANTEDtransitToken111111111"
  mount_path = "transit/"
  key_name   = "pointed-unseal"
}