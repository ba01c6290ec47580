storage "raft" {
  path = "/vault/data"
}
seal "transit" {
  disabled   = "true"
  address    = "https://kms-pointed.example.com:8200"
  token      = "s.PLANTEDtransitToken111111111"
  mount_path = "transit/"
  key_name   = "pointed-unseal"
}
seal "transit" {
  name       = "new"
  address    = "https://kms-new.example.com:8200"
  token      = "s.PLANTEDnewToken22222222222"
  mount_path = "transit/"
  key_name   = "new-unseal"
}
