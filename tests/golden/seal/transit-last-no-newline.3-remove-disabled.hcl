storage "raft" {
  path = "/vault/data"
}
seal "transit" {
  name       = "new"
  address    = "https://kms-new.example.com:8200"
  token      = "s.PLANTEDnewToken22222222222"
  mount_path = "transit/"
  key_name   = "new-unseal"
}
