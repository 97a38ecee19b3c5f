package kmsapi

import (
	"slices"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/kms"
)

// TestTableDeclaresEveryPolicyAction: each row names the actions the domain
// decides it on (kms.Actions), ReEncrypt's two included, and no row names
// an action IAM does not have.
func TestTableDeclaresEveryPolicyAction(t *testing.T) {
	table, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range table.Operations() {
		want := kms.Actions(op.Name)
		got := op.Actions
		if got == nil {
			got = []string{op.Action}
		}
		if !slices.Equal(got, want) || op.Action != want[0] {
			t.Errorf("%s declares %q (Action %q), want %q", op.Name, got, op.Action, want)
		}
		if op.Action == "kms:ReEncrypt" || !strings.HasPrefix(op.Action, "kms:") {
			t.Errorf("%s: action %q", op.Name, op.Action)
		}
	}
	i := slices.IndexFunc(table.Operations(), func(o awsjson.Operation) bool { return o.Name == "ReEncrypt" })
	if i < 0 || !slices.Equal(table.Operations()[i].Actions, []string{"kms:ReEncryptFrom", "kms:ReEncryptTo"}) {
		t.Fatal("ReEncrypt does not declare kms:ReEncryptFrom and kms:ReEncryptTo")
	}
}
