package audit

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var lookupT0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// writeTrail writes n events a second apart, the oldest first; prefix goes
// before them (at the start of the file).
func writeTrail(t testing.TB, n int, prefix string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cloudtrail.jsonl")
	var b strings.Builder
	b.WriteString(prefix)
	for i := 0; i < n; i++ {
		ev := Event{EventVersion: "1.08", EventTime: lookupT0.Add(time.Duration(i) * time.Second).Format(time.RFC3339),
			EventSource: "kms.amazonaws.com", EventName: []string{"Encrypt", "Decrypt"}[i%2], EventID: fmt.Sprintf("ev-%07d", i),
			UserIdentity:       UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::111122223333:user/alice", AccessKeyID: "AKIAALICE", UserName: "alice"},
			RecipientAccountID: "111122223333", RequestParameters: map[string]any{"keyId": "alias/app", "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}}
		line, _ := json.Marshal(ev)
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A page near the end of the trail does not read its beginning: the first
// line is longer than Lookup accepts, so reading it is an error.
func TestLookupReadsOnlyWhatItNeeds(t *testing.T) {
	path := writeTrail(t, 2000, strings.Repeat("x", maxLine+1)+"\n")
	files, err := TrailFiles(path)
	if err != nil || len(files) != 1 {
		t.Fatal(files, err)
	}
	// The whole trail reaches the bad line.
	if _, err := Lookup(files, Query{}, nil, 0); err == nil || !strings.Contains(err.Error(), "a line of more than") {
		t.Fatalf("reading everything: %v, want the over-long line's error", err)
	}
	// A first page stops when full.
	p, err := Lookup(files, Query{}, nil, 50)
	if err != nil || len(p.Found) != 50 || p.Next == nil || p.Found[0].Event.EventID != "ev-0001999" || p.Found[49].Event.EventID != "ev-0001950" {
		t.Fatalf("first page: %d events, next %v, %v", len(p.Found), p.Next, err)
	}
	// Its next page continues where it stopped.
	p2, err := Lookup(files, Query{}, p.Next, 50)
	if err != nil || len(p2.Found) != 50 || p2.Found[0].Event.EventID != "ev-0001949" {
		t.Fatalf("second page: %v %v", len(p2.Found), err)
	}
	// A time range stops once the events are older than its start (by
	// more than the order slack).
	start := lookupT0.Add(1500 * time.Second)
	p, err = Lookup(files, Query{Start: start, Key: AttrEventName, Value: "Decrypt"}, nil, 0)
	if err != nil || len(p.Found) != 250 || p.Next != nil {
		t.Fatalf("since %v: %d events, next %v, %v", start, len(p.Found), p.Next, err)
	}
	for _, f := range p.Found {
		if f.Time.Before(start) || f.Event.EventName != "Decrypt" {
			t.Fatalf("selected %s at %v", f.Event.EventName, f.Time)
		}
	}
}

// Events appended out of order (a slow request's event is written after
// later requests') are still found by a time range, within the slack.
func TestLookupOutOfOrder(t *testing.T) {
	path := writeTrail(t, 3000, "")
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	late := Event{EventVersion: "1.08", EventTime: lookupT0.Add(100 * time.Second).Format(time.RFC3339), EventName: "CreateKey",
		EventID: "late", RecipientAccountID: "111122223333"}
	line, _ := json.Marshal(late)
	f.Write(append(line, '\n'))
	f.Close()
	files, _ := TrailFiles(path)
	p, err := Lookup(files, Query{Start: lookupT0.Add(90 * time.Second), End: lookupT0.Add(110 * time.Second)}, nil, 0)
	if err != nil || len(p.Found) != 22 || p.Found[0].Event.EventID != "late" {
		t.Fatalf("%d events, %v", len(p.Found), err)
	}
}

func TestTrailFilesNewestFirst(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cloudtrail.jsonl")
	now := time.Now()
	for i, name := range []string{"cloudtrail.jsonl-20260101", "cloudtrail.jsonl.1", "cloudtrail.jsonl", "cloudtrail.jsonl.2.gz", "cloudtrail.jsonl-20260102"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, nil, 0o600)
		mod := now.Add(time.Duration(i-10) * time.Minute)
		os.Chtimes(p, mod, mod)
	}
	files, err := TrailFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f))
	}
	want := "cloudtrail.jsonl cloudtrail.jsonl-20260102 cloudtrail.jsonl.1 cloudtrail.jsonl-20260101"
	if strings.Join(got, " ") != want {
		t.Fatalf("TrailFiles = %v, want %s", got, want)
	}
}

// BenchmarkLookupFirstPage reads the newest page of a 100,000-event trail;
// BenchmarkLookupWholeTrail selects one event with no early stop (what
// every LookupEvents call cost before it read backwards).
func BenchmarkLookupFirstPage(b *testing.B) {
	files, _ := TrailFiles(writeTrail(b, 100000, ""))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p, err := Lookup(files, Query{AccountID: "111122223333"}, nil, 50); err != nil || len(p.Found) != 50 {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupWholeTrail(b *testing.B) {
	files, _ := TrailFiles(writeTrail(b, 100000, ""))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p, err := Lookup(files, Query{AccountID: "111122223333", Key: AttrUsername, Value: "alice"}, nil, 0); err != nil || len(p.Found) != 100000 {
			b.Fatal(err)
		}
	}
}
