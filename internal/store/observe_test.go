package store

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"testing"
)

// TestObservedCoversStore: every Store method but Close has its own
// observed method (generated), so none passes through untimed.
func TestObservedCoversStore(t *testing.T) {
	fset := token.NewFileSet()
	declared := map[string]bool{}
	var want []string
	for _, file := range []string{"store.go", "observe.go", "observed_gen.go"} {
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv != nil {
					if star, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok && star.X.(*ast.Ident).Name == "observed" {
						declared[d.Name.Name] = true
					}
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.Name == "Store" {
						for _, m := range ts.Type.(*ast.InterfaceType).Methods.List {
							for _, n := range m.Names {
								want = append(want, n.Name)
							}
						}
					}
				}
			}
		}
	}
	if len(want) < 40 {
		t.Fatalf("found %d Store methods; the test no longer reads the interface", len(want))
	}
	for _, m := range want {
		if m != "Close" && !declared[m] {
			t.Errorf("Store.%s is not observed: run go generate ./internal/store", m)
		}
	}
}

func TestErrorClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{fmt.Errorf("sqlite.GetKey: %w", ErrNotFound), "not_found"},
		{fmt.Errorf("postgres.CreateKey: %w", ErrExists), "exists"},
		{ErrExternalKeyInUse, "exists"},
		{ErrBackupHistoryInUse, "exists"},
		{ErrConflict, "conflict"},
		{ErrLimit, "limit"},
		{fmt.Errorf("postgres.GetKey: %w", ErrUnavailable), "unavailable"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "canceled"},
		{errors.New("disk I/O error"), "other"},
		{callbackErr(fmt.Errorf("x: %w", ErrNotFound), errors.New("other")), "not_found"},
	} {
		if got := ErrorClass(tc.err); got != tc.want {
			t.Errorf("ErrorClass(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
	// A transaction whose body refused: rolled back, whatever the body's
	// error wraps.
	body := fmt.Errorf("kms: %w", ErrNotFound)
	if got := ErrorClass(callbackErr(body, body)); got != "rolled_back" {
		t.Errorf("body error: %q", got)
	}
}
