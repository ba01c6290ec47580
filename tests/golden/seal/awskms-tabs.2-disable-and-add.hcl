ui = true
storage "raft" {
	path = "/vault/data"
}
seal "awskms" {
	disabled = "true"
	region = "us-east-1"
	kms_key_id = "alias/vault-pointed"
}
seal "awskms" {
	name       = "new"
	region     = "eu-west-1"
	kms_key_id = "alias/vault-new"
}
