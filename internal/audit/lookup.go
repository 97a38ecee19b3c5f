package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Lookup attribute keys, as CloudTrail's LookupEvents names them.
const (
	AttrEventID      = "EventId"
	AttrEventName    = "EventName"
	AttrReadOnly     = "ReadOnly"
	AttrUsername     = "Username"
	AttrResourceType = "ResourceType"
	AttrResourceName = "ResourceName"
	AttrEventSource  = "EventSource"
	AttrAccessKeyID  = "AccessKeyId"
)

// LookupKeys lists the attribute keys Query accepts.
var LookupKeys = []string{AttrEventID, AttrEventName, AttrReadOnly, AttrUsername, AttrResourceType, AttrResourceName, AttrEventSource, AttrAccessKeyID}

// Query selects events from the trail. Zero fields select everything.
type Query struct {
	// Key and Value are one lookup attribute (CloudTrail allows one).
	Key, Value string
	// Start and End bound eventTime, both inclusive.
	Start, End time.Time
	// AccountID keeps only events whose recipientAccountId is it.
	AccountID string
}

// Found is one event read back from the trail.
type Found struct {
	Event *Event
	Raw   string // the line as stored: CloudTrail's CloudTrailEvent
	Time  time.Time
}

// Username is CloudTrail's Username of an event: the IAM user name, or
// the session name of an assumed role, or "root".
func (e *Event) Username() string {
	u := e.UserIdentity
	switch {
	case u.UserName != "":
		return u.UserName
	case u.Type == "AssumedRole":
		return u.ARN[strings.LastIndexByte(u.ARN, '/')+1:]
	case u.Type == "Root":
		return "root"
	}
	return ""
}

func (q Query) match(f Found) bool {
	ev := f.Event
	if q.AccountID != "" && ev.RecipientAccountID != q.AccountID {
		return false
	}
	if !q.Start.IsZero() && f.Time.Before(q.Start) {
		return false
	}
	if !q.End.IsZero() && f.Time.After(q.End) {
		return false
	}
	switch q.Key {
	case "":
		return true
	case AttrEventID:
		return ev.EventID == q.Value
	case AttrEventName:
		return ev.EventName == q.Value
	case AttrReadOnly:
		return fmt.Sprint(ev.ReadOnly) == strings.ToLower(q.Value)
	case AttrUsername:
		return ev.Username() == q.Value
	case AttrEventSource:
		return ev.EventSource == q.Value
	case AttrAccessKeyID:
		return ev.UserIdentity.AccessKeyID == q.Value
	case AttrResourceType, AttrResourceName:
		for _, r := range ev.Resources {
			if (q.Key == AttrResourceType && r.Type == q.Value) || (q.Key == AttrResourceName && r.ARN == q.Value) {
				return true
			}
		}
	}
	return false
}

// TrailFiles lists the audit file and the rotated copies beside it
// (cloudtrail.jsonl.1, cloudtrail.jsonl-20260101, ...), skipping
// compressed ones, which Lookup cannot read.
func TrailFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(path + "*")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		if strings.HasSuffix(m, ".gz") || strings.HasSuffix(m, ".zst") || strings.HasSuffix(m, ".bz2") || strings.HasSuffix(m, ".xz") {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// Lookup reads every event of files that q selects, most recent first (as
// LookupEvents returns them). A line that is not an event (a torn write)
// is skipped.
func Lookup(files []string, q Query) ([]Found, error) {
	var out []Found
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("audit.Lookup: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			var ev Event
			if json.Unmarshal([]byte(line), &ev) != nil || ev.EventID == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339, ev.EventTime)
			if err != nil {
				continue
			}
			found := Found{Event: &ev, Raw: line, Time: t}
			if q.match(found) {
				out = append(out, found)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("audit.Lookup %s: %w", path, err)
		}
	}
	// Newest first, and within one second (eventTime's precision) the
	// later line first.
	slices.Reverse(out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}
