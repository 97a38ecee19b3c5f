// Package principal holds keyhold's one type for who makes a request: the
// server fills it once from the verified SigV4 credential, and every layer
// (the operation tables, the domain, the identity directory, the audit
// trail) passes the same value on. It is a leaf: it imports nothing of
// keyhold's and decides nothing.
//
// Policy evaluation parses the ARN into its own view (policy.Principal:
// the account, the user or role name, the session); that is derived from
// this value, not a second identity.
package principal

// Principal is an authenticated caller: an IAM user, or an assumed-role
// session of a role.
type Principal struct {
	AccountID string
	// ARN is the user ARN, or arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION.
	ARN string
	// UserID is the unique id (AIDA... for users, AROA...:session).
	UserID string
	// AccessKeyID is the access key the request was signed with.
	AccessKeyID string
	// RoleARN is the role of an assumed-role session ("" for users).
	RoleARN string
}
