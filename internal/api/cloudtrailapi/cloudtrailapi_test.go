package cloudtrailapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/awsjson"
)

const (
	acctA = "111122223333"
	acctB = "444455556666"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// model is what the test knows about each event it wrote, independently of
// the code under test.
type model struct {
	id, name, user, accessKey, source, resource, account string
	readOnly                                             bool
	time                                                 time.Time
}

// makeEvent builds event i: accounts alternate A, A, B; names, users,
// sources and resources cycle with different periods so that every lookup
// attribute selects a different subset.
func makeEvent(i int) (model, string) {
	m := model{
		id:        fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		name:      []string{"Encrypt", "Decrypt", "CreateKey", "ListKeys"}[i%4],
		user:      []string{"alice", "bob", "deploy"}[i%3],
		accessKey: []string{"AKIAALICE", "AKIABOB", "ASIADEPLOY"}[i%3],
		source:    "kms.amazonaws.com",
		account:   acctA,
		time:      t0.Add(time.Duration(i) * time.Second),
	}
	if i%3 == 2 {
		m.account = acctB
	}
	if i%5 == 0 {
		m.source = "cloudhsm.amazonaws.com"
	}
	m.readOnly = m.name == "ListKeys"
	if m.name != "ListKeys" {
		m.resource = fmt.Sprintf("arn:aws:kms:us-east-1:%s:key/key-%d", m.account, i%7)
	}
	ui := audit.UserIdentity{Type: "IAMUser", ARN: "arn:aws:iam::" + m.account + ":user/" + m.user, AccountID: m.account,
		AccessKeyID: m.accessKey, UserName: m.user}
	if m.user == "deploy" {
		ui = audit.UserIdentity{Type: "AssumedRole", ARN: "arn:aws:sts::" + m.account + ":assumed-role/ci/deploy", AccountID: m.account,
			AccessKeyID: m.accessKey}
	}
	ev := audit.Event{EventVersion: "1.08", UserIdentity: ui, EventTime: m.time.Format(time.RFC3339), EventSource: m.source,
		EventName: m.name, AWSRegion: "us-east-1", RequestID: fmt.Sprintf("req-%d", i), EventID: m.id, ReadOnly: m.readOnly,
		EventType: "AwsApiCall", ManagementEvent: true, RecipientAccountID: m.account, EventCategory: "Management"}
	if i%4 == 0 {
		// Values of other attributes elsewhere in the line: a text
		// search alone would select this event.
		ev.UserAgent = "tool/1.0 Decrypt alice AKIABOB cloudhsm.amazonaws.com " + fmt.Sprintf("key/key-%d", (i+1)%7)
	}
	if m.resource != "" {
		ev.Resources = []audit.Resource{{AccountID: m.account, Type: "AWS::KMS::Key", ARN: m.resource}}
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return m, string(b)
}

type trail struct {
	dir, path string
	events    []model // in the order appended
}

// newTrail writes events [0, rotated) to a rotated copy and [rotated, n)
// to the live file, with a torn line in the middle of the live file and a
// write in progress at its end.
func newTrail(t *testing.T, rotated, n int) *trail {
	t.Helper()
	dir := t.TempDir()
	tr := &trail{dir: dir, path: filepath.Join(dir, "cloudtrail.jsonl")}
	var old, live strings.Builder
	for i := 0; i < n; i++ {
		m, line := makeEvent(i)
		tr.events = append(tr.events, m)
		w := &live
		if i < rotated {
			w = &old
		}
		w.WriteString(line + "\n")
		if i == rotated+3 {
			w.WriteString(`{"eventVersion":"1.08","eventTime":"2026-03-01T12:00:00Z","eventI` + "\n") // torn by a crash
		}
	}
	live.WriteString(`{"eventVersion":"1.08","eventTime":"`) // being written
	if err := os.WriteFile(tr.path+".1", []byte(old.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(tr.path+".1", past, past)
	if err := os.WriteFile(tr.path, []byte(live.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return tr
}

func (tr *trail) append(t *testing.T, from, to int) {
	t.Helper()
	f, err := os.OpenFile(tr.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Finish the line in progress first (it never becomes an event: it
	// was torn).
	f.WriteString("\n")
	for i := from; i < to; i++ {
		m, line := makeEvent(i)
		tr.events = append(tr.events, m)
		f.WriteString(line + "\n")
	}
}

// want lists the ids of the events of acctA that keep selects, newest
// appended first.
func (tr *trail) want(keep func(m model) bool) []string {
	var out []string
	for i := len(tr.events) - 1; i >= 0; i-- {
		if m := tr.events[i]; m.account == acctA && keep(m) {
			out = append(out, m.id)
		}
	}
	return out
}

func lookup(t *testing.T, tr *trail, body string) (lookupResponse, error) {
	t.Helper()
	c := &awsjson.Call{Operation: "LookupEvents", Body: []byte(body),
		Caller: awsjson.Caller{AccountID: acctA, ARN: "arn:aws:iam::" + acctA + ":user/alice"}}
	out, err := lookupEvents(tr.path, c)
	if err != nil {
		return lookupResponse{}, err
	}
	return out.(lookupResponse), nil
}

// all pages through a query (body is the JSON without NextToken, as an
// object's members) and returns every event id, checking each page's size.
func all(t *testing.T, tr *trail, members string, pageSize int) []string {
	t.Helper()
	var ids []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("paging does not end")
		}
		body := "{" + members
		if token != "" {
			if members != "" {
				body += ","
			}
			body += `"NextToken":"` + token + `"`
		}
		body += "}"
		out, err := lookup(t, tr, body)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if len(out.Events) > pageSize {
			t.Fatalf("page of %d events, want at most %d", len(out.Events), pageSize)
		}
		for _, e := range out.Events {
			ids = append(ids, e.EventID)
		}
		if out.NextToken == nil {
			return ids
		}
		token = *out.NextToken
	}
}

func equal(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: event %d is %s, want %s", what, i, got[i], want[i])
		}
	}
}

func TestLookupAttributes(t *testing.T) {
	tr := newTrail(t, 40, 130)
	tests := []struct {
		key, value string
		keep       func(model) bool
	}{
		{"", "", func(model) bool { return true }},
		{"EventName", "Decrypt", func(m model) bool { return m.name == "Decrypt" }},
		{"EventId", tr.events[64].id, func(m model) bool { return m.id == tr.events[64].id }},
		{"EventId", tr.events[65].id, func(model) bool { return false }}, // account B's: not the caller's
		{"ReadOnly", "true", func(m model) bool { return m.readOnly }},
		{"ReadOnly", "false", func(m model) bool { return !m.readOnly }},
		{"Username", "alice", func(m model) bool { return m.user == "alice" }},
		{"Username", "deploy", func(m model) bool { return m.user == "deploy" }}, // an assumed role's session name
		{"ResourceType", "AWS::KMS::Key", func(m model) bool { return m.resource != "" }},
		{"ResourceName", "arn:aws:kms:us-east-1:" + acctA + ":key/key-3", func(m model) bool {
			return m.resource == "arn:aws:kms:us-east-1:"+acctA+":key/key-3"
		}},
		{"EventSource", "cloudhsm.amazonaws.com", func(m model) bool { return m.source == "cloudhsm.amazonaws.com" }},
		{"AccessKeyId", "AKIABOB", func(m model) bool { return m.accessKey == "AKIABOB" }},
		{"EventName", "NoSuchOperation", func(model) bool { return false }},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			members := ""
			if tc.key != "" {
				members = fmt.Sprintf(`"LookupAttributes":[{"AttributeKey":%q,"AttributeValue":%q}]`, tc.key, tc.value)
			}
			want := tr.want(tc.keep)
			equal(t, "default pages", all(t, tr, members, 50), want)
			if members != "" {
				members += ","
			}
			equal(t, "pages of 7", all(t, tr, members+`"MaxResults":7`, 7), want)
		})
	}
	// The first page of everything: 50 events, the newest first, the
	// response fields filled from the event.
	out, err := lookup(t, tr, `{}`)
	if err != nil || len(out.Events) != 50 || out.NextToken == nil {
		t.Fatalf("first page: %d events, token %v, %v", len(out.Events), out.NextToken, err)
	}
	e := out.Events[0]
	m := tr.events[len(tr.events)-1] // event 129, account A
	if e.EventID != m.id || e.EventName != m.name || e.Username != m.user || e.AccessKeyID != m.accessKey ||
		e.EventSource != m.source || e.ReadOnly != fmt.Sprint(m.readOnly) || e.EventTime != float64(m.time.Unix()) ||
		!strings.Contains(e.CloudTrailEvent, `"eventID":"`+m.id+`"`) {
		t.Fatalf("newest event %+v, want %+v", e, m)
	}
	if m.resource != "" && (len(e.Resources) != 1 || e.Resources[0].ResourceName != m.resource || e.Resources[0].ResourceType != "AWS::KMS::Key") {
		t.Fatalf("resources %+v, want %s", e.Resources, m.resource)
	}
}

func TestLookupTimeRange(t *testing.T) {
	tr := newTrail(t, 40, 130)
	sec := func(i int) string { return fmt.Sprint(t0.Add(time.Duration(i) * time.Second).Unix()) }
	tests := []struct {
		members string
		keep    func(model) bool
	}{
		// Both bounds inclusive.
		{`"StartTime":` + sec(30) + `,"EndTime":` + sec(60), func(m model) bool {
			return !m.time.Before(t0.Add(30*time.Second)) && !m.time.After(t0.Add(60*time.Second))
		}},
		{`"StartTime":` + sec(100), func(m model) bool { return !m.time.Before(t0.Add(100 * time.Second)) }},
		{`"EndTime":` + sec(10), func(m model) bool { return !m.time.After(t0.Add(10 * time.Second)) }},
		{`"StartTime":` + sec(500), func(model) bool { return false }},
		// Fractional seconds, as the aws CLI sends them.
		{`"StartTime":` + sec(30) + `.5,"EndTime":` + sec(33) + `.25`, func(m model) bool { return m.time.Unix() >= t0.Unix()+31 && m.time.Unix() <= t0.Unix()+33 }},
		{`"StartTime":` + sec(30) + `,"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Encrypt"}]`, func(m model) bool {
			return !m.time.Before(t0.Add(30*time.Second)) && m.name == "Encrypt"
		}},
	}
	for _, tc := range tests {
		t.Run(tc.members, func(t *testing.T) {
			equal(t, "pages of 5", all(t, tr, tc.members+`,"MaxResults":5`, 5), tr.want(tc.keep))
		})
	}
}

func TestLookupErrors(t *testing.T) {
	tr := newTrail(t, 10, 40)
	first, err := lookup(t, tr, `{"MaxResults":5,"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Encrypt"}]}`)
	if err != nil || first.NextToken == nil {
		t.Fatalf("first page: %v %+v", err, first)
	}
	tok := *first.NextToken
	tests := []struct{ body, typ string }{
		{`{"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Encrypt"},{"AttributeKey":"Username","AttributeValue":"alice"}]}`, "InvalidLookupAttributesException"},
		{`{"LookupAttributes":[{"AttributeKey":"Region","AttributeValue":"us-east-1"}]}`, "InvalidLookupAttributesException"},
		{`{"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":""}]}`, "InvalidLookupAttributesException"},
		{`{"LookupAttributes":[{"AttributeKey":"EventName"}]}`, "InvalidLookupAttributesException"},
		{`{"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"` + strings.Repeat("x", 2001) + `"}]}`, "InvalidLookupAttributesException"},
		{`{"StartTime":1772366500,"EndTime":1772366400}`, "InvalidTimeRangeException"},
		{`{"MaxResults":0}`, "InvalidMaxResultsException"},
		{`{"MaxResults":51}`, "InvalidMaxResultsException"},
		{`{"EventCategory":"management"}`, "InvalidEventCategoryException"},
		{`{"NextToken":"not-a-token"}`, "InvalidNextTokenException"},
		// A token of another query: other attribute, other page size is fine, other time range is not.
		{`{"NextToken":"` + tok + `","LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Decrypt"}]}`, "InvalidNextTokenException"},
		{`{"NextToken":"` + tok + `","StartTime":1,"LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Encrypt"}]}`, "InvalidNextTokenException"},
		{`{"StartTime":"yesterday"}`, awsjson.SerializationException},
		{`{"MaxResults":`, awsjson.SerializationException},
	}
	for _, tc := range tests {
		_, err := lookup(t, tr, tc.body)
		var ae *awsjson.Error
		if !errors.As(err, &ae) || ae.Type != tc.typ || ae.Status != 400 || ae.Message == "" {
			t.Errorf("%.120s: %v, want %s", tc.body, err, tc.typ)
		}
	}
	// The same query with another page size continues.
	if out, err := lookup(t, tr, `{"MaxResults":50,"NextToken":"`+tok+`","LookupAttributes":[{"AttributeKey":"EventName","AttributeValue":"Encrypt"}]}`); err != nil || len(out.Events) == 0 {
		t.Fatalf("continuing with another page size: %v %+v", err, out)
	}
	// Insights: keyhold records none.
	if out, err := lookup(t, tr, `{"EventCategory":"insight"}`); err != nil || len(out.Events) != 0 || out.NextToken != nil {
		t.Fatalf("insight: %v %+v", err, out)
	}
	// No trail at all yet: no events.
	empty := &trail{path: filepath.Join(t.TempDir(), "cloudtrail.jsonl")}
	if out, err := lookup(t, empty, `{}`); err != nil || len(out.Events) != 0 || out.NextToken != nil {
		t.Fatalf("no trail: %v %+v", err, out)
	}
}

// Pages do not shift when events are appended between calls, nor when the
// trail is rotated between calls (the token names the file by identity).
func TestLookupPagesAreStable(t *testing.T) {
	tr := newTrail(t, 40, 100)
	want := tr.want(func(model) bool { return true })
	var got []string
	out, err := lookup(t, tr, `{"MaxResults":10}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range out.Events {
		got = append(got, e.EventID)
	}
	tr.append(t, 100, 120) // newer than the first page: not in the next ones
	out, err = lookup(t, tr, `{"MaxResults":10,"NextToken":"`+*out.NextToken+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range out.Events {
		got = append(got, e.EventID)
	}
	// logrotate: the live file becomes .2 (after .1 becomes .3... here
	// simply .2), a new live file starts.
	if err := os.Rename(tr.path, tr.path+".2"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(tr.path, nil, 0o600)
	tok := *out.NextToken
	for tok != "" {
		out, err = lookup(t, tr, `{"MaxResults":10,"NextToken":"`+tok+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range out.Events {
			got = append(got, e.EventID)
		}
		tok = ""
		if out.NextToken != nil {
			tok = *out.NextToken
		}
	}
	equal(t, "pages across an append and a rotation", got, want)
}
