package policy_test

import (
	"fmt"

	"github.com/keyhold/keyhold/internal/policy"
)

func ExampleDecide() {
	keyPolicy, err := policy.Parse(policy.DefaultKeyPolicy("111122223333"), policy.KeyPolicy)
	if err != nil {
		panic(err)
	}
	bob, _ := policy.ParsePrincipal("arn:aws:iam::111122223333:user/bob")
	const key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	req := policy.Request{
		Principal: bob,
		Action:    "kms:Encrypt",
		Resource:  key,
		Context: policy.NewContext().
			SetPrincipal(bob).
			SetEncryptionContext(map[string]string{"Department": "IT"}),
	}

	// The default key policy delegates to identity policies; bob has none.
	r := policy.Decide(policy.Input{KeyPolicy: keyPolicy, Request: req})
	fmt.Println(r.Allowed, r.Reason)
	fmt.Println(r.Message(req.Action, bob.ARN, key))

	// With one that allows Encrypt for this encryption context.
	id := policy.MustParse(`{"Version":"2012-10-17","Statement":{"Sid":"EncryptIT","Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
		"Condition":{"StringEquals":{"kms:EncryptionContext:Department":"IT"}}}}`, policy.IdentityPolicy)
	r = policy.Decide(policy.Input{KeyPolicy: keyPolicy, IdentityPolicies: []*policy.Document{id}, Request: req})
	fmt.Println(r.Allowed, r.Reason, r.Sid)
	// Output:
	// false NoIdentityPolicyAllows
	// User: arn:aws:iam::111122223333:user/bob is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Encrypt action
	// true AllowedByIdentityPolicy EncryptIT
}

func ExampleParse() {
	_, err := policy.Parse(`{"Version":"2012-10-17","Statement":[{"Sid":"Use","Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}`, policy.KeyPolicy)
	fmt.Println(err)
	// Output:
	// Statement 1 (Sid "Use"): a key policy statement must have a Principal (or NotPrincipal) saying who it applies to.
}
