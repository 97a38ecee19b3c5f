package policy

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// goldenFile is the decision table: policies x requests x expected outcome.
type goldenFile struct {
	Policies map[string]json.RawMessage `json:"policies"`
	Cases    []goldenCase               `json:"cases"`
}

type goldenCase struct {
	Name       string                     `json:"name"`
	Principal  string                     `json:"principal"`
	RoleARN    string                     `json:"role_arn"`
	Action     string                     `json:"action"`
	Resource   string                     `json:"resource"`
	KeyPolicy  json.RawMessage            `json:"key_policy"`
	Identity   []json.RawMessage          `json:"identity"`
	Grant      bool                       `json:"grant"`
	KeyAccount string                     `json:"key_account"`
	Context    map[string]json.RawMessage `json:"context"`
	Want       string                     `json:"want"`
	Reason     string                     `json:"reason"`
	Sid        *string                    `json:"sid"`
}

const testAccount = "111122223333"

func TestGoldenDecisions(t *testing.T) {
	raw, err := os.ReadFile("testdata/decisions.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) < 60 {
		t.Fatalf("only %d golden cases", len(g.Cases))
	}
	seen := map[string]bool{}
	for _, c := range g.Cases {
		if seen[c.Name] {
			t.Errorf("duplicate case name %q", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			in := Input{GrantAllows: c.Grant, KeyAccount: c.KeyAccount}
			in.Request = Request{
				Principal: goldenPrincipal(t, c.Principal, c.RoleARN),
				Action:    c.Action,
				Resource:  c.Resource,
				Context:   NewContext(),
			}
			for k, v := range c.Context {
				in.Request.Context.Set(k, goldenValues(t, v)...)
			}
			if len(c.KeyPolicy) > 0 && string(c.KeyPolicy) != "null" {
				in.KeyPolicy = goldenPolicy(t, g.Policies, c.KeyPolicy, KeyPolicy)
			}
			for _, p := range c.Identity {
				in.IdentityPolicies = append(in.IdentityPolicies, goldenPolicy(t, g.Policies, p, IdentityPolicy))
			}
			got := Decide(in)
			if want := c.Want == "allow"; got.Allowed != want || got.Reason.String() != c.Reason {
				t.Errorf("Decide = allowed %v, %v (sid %q); want %s, %s", got.Allowed, got.Reason, got.Sid, c.Want, c.Reason)
			}
			if _, ok := ParseReason(c.Reason); !ok {
				t.Errorf("unknown reason %q in the table", c.Reason)
			}
			if c.Sid != nil && got.Sid != *c.Sid {
				t.Errorf("Sid = %q, want %q", got.Sid, *c.Sid)
			}
			msg := got.Message(c.Action, c.Principal, c.Resource)
			if got.Allowed != (msg == "") {
				t.Errorf("Message = %q for allowed=%v", msg, got.Allowed)
			}
		})
	}
}

func goldenPrincipal(t *testing.T, s, roleARN string) Principal {
	t.Helper()
	switch {
	case s == "anonymous":
		return Principal{Type: Anonymous}
	case strings.HasPrefix(s, "service:"):
		return Principal{Type: Service, ARN: strings.TrimPrefix(s, "service:")}
	}
	p, err := ParsePrincipal(s)
	if err != nil {
		t.Fatal(err)
	}
	if roleARN != "" {
		p.RoleARN = roleARN
	}
	return p
}

func goldenValues(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		t.Fatalf("context value %s: %v", raw, err)
	}
	return many
}

func goldenPolicy(t *testing.T, named map[string]json.RawMessage, raw json.RawMessage, kind Kind) *Document {
	t.Helper()
	var name string
	if json.Unmarshal(raw, &name) == nil {
		if name == "default" {
			return MustParse(DefaultKeyPolicy(testAccount), kind)
		}
		var ok bool
		if raw, ok = named[name]; !ok {
			t.Fatalf("no policy named %q", name)
		}
	}
	d, err := Parse(string(raw), kind)
	if err != nil {
		t.Fatalf("Parse(%s): %v", raw, err)
	}
	return d
}

func TestMessage(t *testing.T) {
	const (
		bob = "arn:aws:iam::111122223333:user/bob"
		key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	)
	tests := []struct {
		reason   Reason
		action   string
		resource string
		want     string
	}{
		{NoIdentityPolicyAllows, "kms:Encrypt", key, "User: " + bob + " is not authorized to perform: kms:Encrypt on resource: " + key + " because no identity-based policy allows the kms:Encrypt action"},
		{ExplicitDenyKeyPolicy, "kms:Encrypt", key, "User: " + bob + " is not authorized to perform: kms:Encrypt on resource: " + key + " with an explicit deny in a key policy"},
		{ExplicitDenyIdentityPolicy, "kms:Decrypt", key, "User: " + bob + " is not authorized to perform: kms:Decrypt on resource: " + key + " with an explicit deny in an identity-based policy"},
		{KeyPolicyDoesNotAllow, "kms:Decrypt", key, "User: " + bob + " is not authorized to perform: kms:Decrypt on resource: " + key + " because no resource-based policy allows the kms:Decrypt action"},
		{NoIdentityPolicyAllows, "kms:CreateKey", "", "User: " + bob + " is not authorized to perform: kms:CreateKey because no identity-based policy allows the kms:CreateKey action"},
	}
	for _, tt := range tests {
		if got := (Result{Reason: tt.reason}).Message(tt.action, bob, tt.resource); got != tt.want {
			t.Errorf("%v:\n got %s\nwant %s", tt.reason, got, tt.want)
		}
	}
	if got := (Result{Allowed: true, Reason: AllowedByKeyPolicy}).Message("kms:Encrypt", bob, key); got != "" {
		t.Errorf("allowed result has message %q", got)
	}
}

func TestLockoutSafe(t *testing.T) {
	bob, _ := ParsePrincipal("arn:aws:iam::111122223333:user/bob")
	root, _ := ParsePrincipal("arn:aws:iam::111122223333:root")
	session, _ := ParsePrincipal("arn:aws:sts::111122223333:assumed-role/Admin/me")
	other, _ := ParsePrincipal("arn:aws:iam::444455556666:user/eve")
	tests := []struct {
		name   string
		policy string
		caller Principal
		want   bool
	}{
		{"default policy, user of the account", DefaultKeyPolicy(testAccount), bob, true},
		{"default policy, root", DefaultKeyPolicy(testAccount), root, true},
		{"default policy, other account", DefaultKeyPolicy(testAccount), other, false},
		{"names only alice", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alice"},"Action":"kms:*","Resource":"*"}}`, bob, false},
		{"names bob for Encrypt only", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/bob"},"Action":"kms:Encrypt","Resource":"*"}}`, bob, false},
		{"names the role of the session", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/Admin"},"Action":"kms:Put*","Resource":"*"}}`, session, true},
		{"resource written as the key ARN", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"arn:aws:kms:us-east-1:111122223333:key/k"}}`, bob, true},
		{"allow then deny PutKeyPolicy to everyone", `{"Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:PutKeyPolicy","Resource":"*"}]}`, root, false},
		{"allow only from an IP range", `{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}}`, bob, false},
		{"allow on the caller's account condition", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":"111122223333"}}}}`, bob, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := LockoutSafe(MustParse(tt.policy, KeyPolicy), tt.caller); got != tt.want {
				t.Errorf("LockoutSafe = %v, want %v", got, tt.want)
			}
		})
	}
	if LockoutSafe(nil, bob) {
		t.Error("LockoutSafe(nil) = true")
	}
}

func TestDefaultKeyPolicy(t *testing.T) {
	d, err := Parse(DefaultKeyPolicy(testAccount), KeyPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != Version2012 || d.ID != "key-default-1" || len(d.Statements) != 1 {
		t.Fatalf("unexpected document %+v", d)
	}
	s := d.Statements[0]
	if s.Sid != "Enable IAM User Permissions" || s.Effect != Allow || s.Principal == nil ||
		len(s.Principal.AWS) != 1 || s.Principal.AWS[0] != "arn:aws:iam::111122223333:root" ||
		len(s.Action) != 1 || s.Action[0] != "kms:*" || len(s.Resource) != 1 || s.Resource[0] != "*" {
		t.Errorf("unexpected statement %+v", s)
	}
}
