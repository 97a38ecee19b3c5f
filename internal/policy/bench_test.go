package policy

import "testing"

// tenStatementPolicy is a key policy of the size and shape real ones reach:
// administrators, users bound to encryption context, a service, grants for
// AWS resources, and denies on transport and deletion.
const tenStatementPolicy = `{
  "Version": "2012-10-17",
  "Id": "bench-10",
  "Statement": [
    {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": ["kms:Describe*", "kms:List*", "kms:Get*"], "Resource": "*"},
    {"Sid": "Admins", "Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::111122223333:role/KeyAdmin", "arn:aws:iam::111122223333:user/admin"]},
     "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"], "Resource": "*"},
    {"Sid": "DenyPlainHTTP", "Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    {"Sid": "DenyOutsideNetwork", "Effect": "Deny", "Principal": "*", "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*",
     "Condition": {"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}, "Bool": {"aws:ViaAWSService": "false"}}},
    {"Sid": "DenyShortDeletion", "Effect": "Deny", "Principal": "*", "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
     "Condition": {"NumericLessThan": {"kms:ScheduleKeyDeletionPendingWindowInDays": "30"}}},
    {"Sid": "AppEncrypt", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": ["kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:EncryptionContext:Department": ["IT", "HR"]}, "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}}},
    {"Sid": "AppDecrypt", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": "kms:Decrypt", "Resource": "*",
     "Condition": {"StringLike": {"kms:EncryptionContext:Project": "alpha-*"}, "DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}},
    {"Sid": "TeamUsers", "Effect": "Allow", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333", "aws:PrincipalTag/team": "${aws:ResourceTag/team}"}, "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:user/*"}}},
    {"Sid": "ViaEBS", "Effect": "Allow", "Principal": "*", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant"], "Resource": "*",
     "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333", "kms:ViaService": "ec2.us-east-1.amazonaws.com"}}},
    {"Sid": "GrantsForAWSResources", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/App"}, "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}
  ]
}`

func benchRequest() Request {
	p, _ := ParsePrincipal("arn:aws:iam::111122223333:user/bob")
	return Request{
		Principal: p,
		Action:    "kms:Encrypt",
		Resource:  "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		Context: NewContext().
			SetEncryptionContext(map[string]string{"Department": "IT", "Project": "alpha-1"}).
			Set(KeySourceIP, "10.1.2.3").
			SetBool(KeySecureTransport, true).
			Set(KeyCurrentTime, "2026-03-01T12:00:00Z").
			SetPrincipalTags(map[string]string{"team": "blue"}).
			SetResourceTags(map[string]string{"team": "blue"}),
	}
}

// BenchmarkDecide compares the default key policy (root delegation to an
// identity policy) with a 10-statement policy with conditions, for the
// same Encrypt request. Both end allowed.
func BenchmarkDecide(b *testing.B) {
	identity := []*Document{MustParse(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"arn:aws:kms:*:111122223333:key/*"}}`, IdentityPolicy)}
	for _, bc := range []struct {
		name   string
		policy string
		want   Reason
	}{
		{"default", DefaultKeyPolicy("111122223333"), AllowedByIdentityPolicy},
		{"ten-statements", tenStatementPolicy, AllowedByKeyPolicy},
	} {
		in := Input{KeyPolicy: MustParse(bc.policy, KeyPolicy), IdentityPolicies: identity, Request: benchRequest()}
		if r := Decide(in); !r.Allowed || r.Reason != bc.want {
			b.Fatalf("%s: Decide = %+v", bc.name, r)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Decide(in)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(tenStatementPolicy, KeyPolicy); err != nil {
			b.Fatal(err)
		}
	}
}
