package kms

// Actions are the policy actions an operation is decided on, in the order
// it checks them: "kms:"+op for every KMS operation except ReEncrypt, which
// AWS authorizes as two actions, kms:ReEncryptFrom on the source key and
// kms:ReEncryptTo on the destination key (there is no kms:ReEncrypt). The
// operation table (internal/api/kmsapi) declares exactly these.
func Actions(op string) []string {
	if op == "ReEncrypt" {
		return []string{ActionReEncryptFrom, ActionReEncryptTo}
	}
	return []string{"kms:" + op}
}

// ReEncrypt's two policy actions.
const (
	ActionReEncryptFrom = "kms:ReEncryptFrom"
	ActionReEncryptTo   = "kms:ReEncryptTo"
)
