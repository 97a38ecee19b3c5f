package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	const (
		ok    = `"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"kms:*","Resource":"*"`
		okIDP = `"Effect":"Allow","Action":"kms:*","Resource":"*"`
	)
	stmt := func(body string) string { return `{"Version":"2012-10-17","Statement":[{` + ok + `},{` + body + `}]}` }
	tests := []struct {
		name string
		doc  string
		kind Kind
		want string // substring of the message
		stmt int
	}{
		{"empty", "", KeyPolicy, "empty", 0},
		{"bad JSON", `{"Statement": [}`, KeyPolicy, "not valid JSON", 0},
		{"bad JSON has a position", "{\n  \"Statement\": [\n    {\"Effect\": \"Allow\",,}\n  ]\n}", KeyPolicy, "line 3", 0},
		{"trailing data", `{"Statement":{` + ok + `}} {}`, KeyPolicy, "after the end", 0},
		{"trailing garbage", `{"Statement":{` + ok + `}} x`, KeyPolicy, "after the end", 0},
		{"not an object", `["Statement"]`, KeyPolicy, "JSON object", 0},
		{"too big", `{"Statement":{` + ok + `},"Id":"` + strings.Repeat("x", MaxSize) + `"}`, KeyPolicy, "32 KiB", 0},
		{"bad version", `{"Version":"2012-10-18","Statement":{` + ok + `}}`, KeyPolicy, "Version must be", 0},
		{"no statement", `{"Version":"2012-10-17"}`, KeyPolicy, "no Statement", 0},
		{"empty statement list", `{"Statement":[]}`, KeyPolicy, "must not be empty", 0},
		{"statement a string", `{"Statement":"x"}`, KeyPolicy, "object or a list", 0},
		{"unknown top-level element", `{"Statment":[]}`, KeyPolicy, `unknown policy element "Statment"`, 0},
		{"top-level element case", `{"statement":{` + ok + `}}`, KeyPolicy, `did you mean "Statement"`, 0},
		{"unknown Effect", stmt(`"Sid":"Typo","Effect":"Alow","Principal":"*","Action":"kms:*","Resource":"*"`), KeyPolicy, `(Sid "Typo"): unknown Effect "Alow"`, 2},
		{"Effect case", stmt(`"Effect":"allow","Principal":"*","Action":"kms:*","Resource":"*"`), KeyPolicy, `unknown Effect "allow"`, 2},
		{"missing Effect", stmt(`"Principal":"*","Action":"kms:*","Resource":"*"`), KeyPolicy, "Effect is missing", 2},
		{"missing Action", stmt(`"Effect":"Allow","Principal":"*","Resource":"*"`), KeyPolicy, "Action is missing", 2},
		{"Action and NotAction", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","NotAction":"kms:Encrypt","Resource":"*"`), KeyPolicy, "both Action and NotAction", 2},
		{"empty Action list", stmt(`"Effect":"Allow","Principal":"*","Action":[],"Resource":"*"`), KeyPolicy, "Action must not be empty", 2},
		{"Action without service", stmt(`"Effect":"Allow","Principal":"*","Action":"Encrypt","Resource":"*"`), KeyPolicy, `Action "Encrypt" is not of the form service:action`, 2},
		{"Action a number", stmt(`"Effect":"Allow","Principal":"*","Action":7,"Resource":"*"`), KeyPolicy, "Action must be a string or a list", 2},
		{"missing Resource", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*"`), KeyPolicy, "Resource is missing", 2},
		{"bad Resource", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"mykey"`), KeyPolicy, `Resource "mykey" must be "*" or an ARN`, 2},
		{"Resource and NotResource", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","NotResource":"*"`), KeyPolicy, "both Resource and NotResource", 2},
		{"key policy without Principal", stmt(okIDP), KeyPolicy, "must have a Principal", 2},
		{"identity policy with Principal", `{"Statement":{` + ok + `}}`, IdentityPolicy, "cannot have a Principal", 1},
		{"Principal and NotPrincipal", stmt(`"Effect":"Deny","Principal":"*","NotPrincipal":"*","Action":"kms:*","Resource":"*"`), KeyPolicy, "both Principal and NotPrincipal", 2},
		{"Principal a name", stmt(`"Effect":"Allow","Principal":"bob","Action":"kms:*","Resource":"*"`), KeyPolicy, `Principal must be "*" or an object`, 2},
		{"Principal not an ARN", stmt(`"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"kms:*","Resource":"*"`), KeyPolicy, `Principal "bob" is not a valid AWS principal`, 2},
		{"Principal short account", stmt(`"Effect":"Allow","Principal":{"AWS":"11112222333"},"Action":"kms:*","Resource":"*"`), KeyPolicy, "not a valid AWS principal", 2},
		{"Principal wildcard ARN", stmt(`"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:role/*"},"Action":"kms:*","Resource":"*"`), KeyPolicy, "has a wildcard", 2},
		{"Principal group", stmt(`"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:group/admins"},"Action":"kms:*","Resource":"*"`), KeyPolicy, "groups cannot be principals", 2},
		{"Principal key ARN", stmt(`"Effect":"Allow","Principal":{"AWS":"arn:aws:kms:us-east-1:111122223333:key/k"},"Action":"kms:*","Resource":"*"`), KeyPolicy, "not a valid principal ARN", 2},
		{"Principal unknown type", stmt(`"Effect":"Allow","Principal":{"aws":"111122223333"},"Action":"kms:*","Resource":"*"`), KeyPolicy, `did you mean "AWS"`, 2},
		{"Principal empty object", stmt(`"Effect":"Allow","Principal":{},"Action":"kms:*","Resource":"*"`), KeyPolicy, "at least one principal", 2},
		{"Service principal", stmt(`"Effect":"Allow","Principal":{"Service":"kms"},"Action":"kms:*","Resource":"*"`), KeyPolicy, "not a service principal", 2},
		{"unknown statement element", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Conditions":{}`), KeyPolicy, `unknown statement element "Conditions"`, 2},
		{"unknown operator", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEqual":{"kms:CallerAccount":"1"}}`), KeyPolicy, `Condition operator "StringEqual" is not known`, 2},
		{"unknown set prefix", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"ForSomeValues:StringEquals":{"kms:CallerAccount":"1"}}`), KeyPolicy, "unknown prefix", 2},
		{"NullIfExists", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NullIfExists":{"kms:CallerAccount":"true"}}`), KeyPolicy, "Null takes neither", 2},
		{"condition key without prefix", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"CallerAccount":"1"}}`), KeyPolicy, "needs a service prefix", 2},
		{"condition not an object", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":"x"`), KeyPolicy, "Condition must be an object", 2},
		{"condition no keys", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{}}`), KeyPolicy, "has no condition keys", 2},
		{"condition no values", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":[]}}`), KeyPolicy, "has no values", 2},
		{"condition value object", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"kms:CallerAccount":{"a":1}}}`), KeyPolicy, "values must be strings", 2},
		{"numeric not a number", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"NumericLessThan":{"kms:ScheduleKeyDeletionPendingWindowInDays":"ten"}}`), KeyPolicy, `"ten" is not a number`, 2},
		{"date not a date", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"DateLessThan":{"aws:CurrentTime":"tomorrow"}}`), KeyPolicy, "is not a date", 2},
		{"bool not a bool", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"yes"}}`), KeyPolicy, `"yes" is not "true" or "false"`, 2},
		{"null not a bool", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"Null":{"aws:SecureTransport":"maybe"}}`), KeyPolicy, `"maybe" is not "true" or "false"`, 2},
		{"bad CIDR", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/33"}}`), KeyPolicy, "not an IP address or CIDR", 2},
		{"bad base64", stmt(`"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"BinaryEquals":{"kms:X":"!!"}}`), KeyPolicy, "not base64", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.doc, tt.kind)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v, want a *ParseError", err)
			}
			if !strings.Contains(pe.Error(), tt.want) {
				t.Errorf("message %q does not contain %q", pe.Error(), tt.want)
			}
			if pe.Statement != tt.stmt {
				t.Errorf("Statement = %d, want %d (%s)", pe.Statement, tt.stmt, pe.Error())
			}
			if tt.stmt > 0 && !strings.HasPrefix(pe.Error(), "Statement ") {
				t.Errorf("message %q does not name the statement", pe.Error())
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	docs := map[string]string{
		"statement as object, no version": `{"Statement":{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}}`,
		"2008 version":                    `{"Version":"2008-10-17","Statement":[{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::111122223333:root","arn:aws:sts::111122223333:assumed-role/R/s"]},"NotAction":"kms:Describe*","NotResource":"arn:aws:kms:*:*:key/*"}]}`,
		"all principal types":             `{"Statement":{"Effect":"Allow","Principal":{"AWS":["*","111122223333","arn:aws-cn:iam::111122223333:user/path/u","arn:aws:iam::111122223333:role/r","arn:aws:sts::111122223333:federated-user/f"],"Service":["kms.amazonaws.com"],"Federated":"cognito-identity.amazonaws.com","CanonicalUser":"79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},"Action":["kms:Encrypt","kms:Re*"],"Resource":"*"}}`,
		"every operator": `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*","Condition":{
			"StringEquals":{"a:b":"x"},"StringNotEquals":{"a:b":["x","y"]},"StringEqualsIgnoreCase":{"a:b":"x"},"StringNotEqualsIgnoreCase":{"a:b":"x"},
			"StringLike":{"a:b":"x*"},"StringNotLike":{"a:b":"x?"},"NumericEquals":{"a:n":1},"NumericNotEquals":{"a:n":"1.5"},"NumericLessThan":{"a:n":-1},
			"NumericLessThanEquals":{"a:n":1e3},"NumericGreaterThan":{"a:n":"0"},"NumericGreaterThanEquals":{"a:n":0},"DateEquals":{"a:d":"2026-01-01"},
			"DateNotEquals":{"a:d":1700000000},"DateLessThan":{"a:d":"2026-01-01T00:00:00Z"},"DateLessThanEquals":{"a:d":"2026-01-01T00:00:00.123+02:00"},
			"DateGreaterThan":{"a:d":"20260101T000000Z"},"DateGreaterThanEquals":{"a:d":"2026-01-01T10:00"},"Bool":{"a:b":true},"BinaryEquals":{"a:b":"AAEC"},
			"IpAddress":{"a:ip":["10.0.0.0/8","::1","2001:db8::/32"]},"NotIpAddress":{"a:ip":"192.0.2.1"},"ArnEquals":{"a:arn":"arn:aws:iam::1:root"},
			"ArnNotEquals":{"a:arn":"arn:*"},"ArnLike":{"a:arn":"arn:aws:iam::*:role/*"},"ArnNotLike":{"a:arn":"*"},"Null":{"a:b":["true","false"]},
			"ForAnyValue:StringLike":{"a:m":"x"},"ForAllValues:StringEqualsIfExists":{"a:m":"x"},"stringequalsifexists":{"a:b":"${aws:username}"}}}}`,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			d, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			_ = d.Evaluate(Request{Action: "kms:Encrypt", Context: NewContext().Set("a:b", "x")})
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		fold       bool
		want       bool
	}{
		{"*", "", false, true},
		{"*", "anything", false, true},
		{"a*c", "abbbc", false, true},
		{"a*c", "abbbd", false, false},
		{"a?c", "abc", false, true},
		{"a?c", "ac", false, false},
		{"a?c", "aéc", false, true}, // ? is one character, not one byte
		{"*a*b*c*", "xxaxxbxxcxx", false, true},
		{"*a*b*c*", "xxaxxcxxbxx", false, false},
		{"KMS:En*", "kms:encrypt", true, true},
		{"KMS:En*", "kms:encrypt", false, false},
		{"", "", false, true},
		{"", "a", false, false},
		{"**", "a", false, true},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s, tt.fold, false); got != tt.want {
			t.Errorf("glob(%q, %q, %v) = %v, want %v", tt.pattern, tt.s, tt.fold, got, tt.want)
		}
	}
}

func TestSubstitute(t *testing.T) {
	e := &env{req: &Request{
		Principal: Principal{Type: User, ARN: "arn:aws:iam::111122223333:user/bob", AccountID: "111122223333"},
		Context:   NewContext().Set("aws:PrincipalTag/team", "bl*e"),
	}, vars: true}
	tests := []struct {
		in, want string
		glob, ok bool
	}{
		{"${aws:username}/x", "bob/x", false, true},
		{"${AWS:UserName}", "bob", false, true},
		{"${aws:PrincipalTag/team}-*", `bl\*e-*`, true, true},
		{"${aws:PrincipalTag/missing}", "", false, false},
		{"${aws:PrincipalTag/missing, 'none'}", "none", false, true},
		{"${*}${?}${$}", `\*\?$`, true, true},
		{"a${b", "a${b", false, true},
		{"${kms:CallerAccount}", "111122223333", false, true},
	}
	for _, tt := range tests {
		got, ok := substitute(tt.in, e, tt.glob)
		if got != tt.want || ok != tt.ok {
			t.Errorf("substitute(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestContext(t *testing.T) {
	c := NewContext().
		SetEncryptionContext(map[string]string{"Department": "IT", "Project": "alpha"}).
		SetRequestTags(map[string]string{"Owner": "bob"}).
		SetBool(KeySecureTransport, true)
	if v, ok := c.Get("KMS:ENCRYPTIONCONTEXT:DEPARTMENT"); !ok || v[0] != "IT" {
		t.Errorf("encryption context key: %v %v", v, ok)
	}
	if v, _ := c.Get(KeyEncryptionContextKeys); strings.Join(v, ",") != "Department,Project" {
		t.Errorf("EncryptionContextKeys = %v", v)
	}
	if v, _ := c.Get(KeyTagKeys); strings.Join(v, ",") != "Owner" {
		t.Errorf("TagKeys = %v", v)
	}
	if _, ok := NewContext().SetEncryptionContext(nil).Get(KeyEncryptionContextKeys); ok {
		t.Error("empty encryption context sets kms:EncryptionContextKeys")
	}
	hand := Context{"Kms:ViaService": {"ec2.us-east-1.amazonaws.com"}}
	if _, ok := hand.Get("kms:viaservice"); !ok {
		t.Error("hand-built context key not found case-insensitively")
	}
	p, _ := ParsePrincipal("arn:aws:sts::111122223333:assumed-role/App/s1")
	c = NewContext().SetPrincipal(p)
	if v, _ := c.Get(KeyPrincipalArn); v[0] != "arn:aws:iam::111122223333:role/App" {
		t.Errorf("aws:PrincipalArn of a session = %v", v)
	}
	if v, _ := c.Get(KeyCallerAccount); v[0] != "111122223333" {
		t.Errorf("kms:CallerAccount = %v", v)
	}
}

func TestParsePrincipal(t *testing.T) {
	tests := []struct {
		arn     string
		typ     PrincipalType
		roleARN string
		bad     bool
	}{
		{"arn:aws:iam::111122223333:root", Root, "", false},
		{"arn:aws:iam::111122223333:user/a/b/bob", User, "", false},
		{"arn:aws:iam::111122223333:role/R", Role, "", false},
		{"arn:aws:sts::111122223333:assumed-role/R/s", AssumedRole, "arn:aws:iam::111122223333:role/R", false},
		{"arn:aws:sts::111122223333:federated-user/f", FederatedUser, "", false},
		{"arn:aws:sts::111122223333:assumed-role/R", 0, "", true},
		{"arn:aws:iam::1:root", 0, "", true},
		{"bob", 0, "", true},
	}
	for _, tt := range tests {
		p, err := ParsePrincipal(tt.arn)
		if (err != nil) != tt.bad || p.Type != tt.typ || p.RoleARN != tt.roleARN {
			t.Errorf("ParsePrincipal(%q) = %+v, %v", tt.arn, p, err)
		}
	}
}
