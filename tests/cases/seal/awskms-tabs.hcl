ui = true
storage "raft" {
	path = "/vault/data"
}
seal "awskms" {
	region = "us-east-1"
	kms_key_id = "alias/old"
}
