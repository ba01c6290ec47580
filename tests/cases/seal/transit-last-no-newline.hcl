storage "raft" {
  path = "/vault/data"
}
seal "transit" {
  address    = "http://127.0.0.1:18200"
  token      = "s.PLANTEDtransitToken111111111"
  mount_path = "transit/"
  key_name   = "old-unseal"
}