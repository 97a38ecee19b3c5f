package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockIsExclusiveAndNamesTheHolder(t *testing.T) {
	dir := t.TempDir()
	release, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Lock(dir)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Lock = %v, want ErrInUse naming pid %d", err, os.Getpid())
	}
	release()
	release2, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	release2()
}

func TestAbs(t *testing.T) {
	wd, _ := os.Getwd()
	got, err := Abs("some/dir/../data")
	if err != nil || got != filepath.Join(wd, "some", "data") {
		t.Fatalf("Abs = %q, %v", got, err)
	}
	if _, err := Abs(""); err == nil {
		t.Fatal("Abs(\"\") succeeded")
	}
}
