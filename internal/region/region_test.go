package region

import (
	"regexp"
	"testing"
)

// model is the KMS model's RegionType pattern, the reference.
var model = regexp.MustCompile(`^([a-z]+-){2,3}\d+$`)

func TestValid(t *testing.T) {
	for _, s := range []string{"us-east-1", "eu-west-2", "us-gov-west-1", "ap-southeast-2", "cn-north-1", "us-iso-east-1",
		"", "us-east", "us-east-", "-us-east-1", "us--east-1", "US-east-1", "us-east-1a", "a-b-c-d-1", "us-east-1-1",
		"useast1", "us_east_1", "us-east-01", "abcdefghijklmnop-qrstuvwxyzabcd-1"} {
		want := model.MatchString(s) && len(s) <= MaxLen
		if got := Valid(s); got != want {
			t.Errorf("Valid(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	f.Add("us-east-1")
	f.Add("us-gov-west-10")
	f.Fuzz(func(t *testing.T, s string) {
		if want := model.MatchString(s) && len(s) <= MaxLen; Valid(s) != want {
			t.Fatalf("Valid(%q) = %v, want %v", s, !want, want)
		}
	})
}
