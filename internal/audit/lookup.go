package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
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
// (cloudtrail.jsonl.1, cloudtrail.jsonl-20260101, ...), newest first (by
// modification time: the live file, then the most recently rotated),
// skipping compressed ones, which Lookup cannot read.
func TrailFiles(path string) ([]string, error) {
	matches, err := filepath.Glob(path + "*")
	if err != nil {
		return nil, err
	}
	type file struct {
		path string
		mod  time.Time
	}
	var fs []file
	for _, m := range matches {
		if strings.HasSuffix(m, ".gz") || strings.HasSuffix(m, ".zst") || strings.HasSuffix(m, ".bz2") || strings.HasSuffix(m, ".xz") {
			continue
		}
		st, err := os.Stat(m)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		fs = append(fs, file{m, st.ModTime()})
	}
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].path == path || fs[j].path == path {
			return fs[i].path == path
		}
		return fs[i].mod.After(fs[j].mod)
	})
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.path
	}
	return out, nil
}

// Cursor is where a page of Lookup results stopped: the file (by its
// identity, which survives rotation's rename) and the offset of the line
// to continue before. The zero Cursor starts at the end of the newest file.
type Cursor struct {
	Dev, Ino uint64
	Offset   int64
}

// Page is one page of results.
type Page struct {
	Found []Found
	// Next continues the lookup (nil: there is no more).
	Next *Cursor
}

// orderSlack bounds how far the trail's order strays from eventTime order:
// an event carries its request's arrival time but is appended when the
// request completes, so a slow request's event follows events of requests
// that started later. Reading backwards, Lookup stops at the first event
// older than Start by more than this.
const orderSlack = 15 * time.Minute

// Lookup returns the events of files (newest first, as TrailFiles lists
// them) that q selects, in the trail's reverse order: the most recently
// appended first. It reads each file backwards from its end and stops as
// soon as limit events are found (limit <= 0: no limit) or the events are
// older than q.Start, so a page near the end of a long trail reads only
// the end. from (nil: the end of the newest file) continues a previous
// page. A line that is not an event (a torn write) is skipped.
func Lookup(files []string, q Query, from *Cursor, limit int) (Page, error) {
	var page Page
	started := from == nil
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return page, fmt.Errorf("audit.Lookup: %w", err)
		}
		dev, ino, end, err := identity(f)
		if err != nil {
			f.Close()
			return page, fmt.Errorf("audit.Lookup %s: %w", path, err)
		}
		if !started {
			if dev != from.Dev || ino != from.Ino {
				f.Close()
				continue
			}
			started = true
			end = min(from.Offset, end)
		}
		stop := false
		err = readBackwards(f, end, func(line []byte, off int64) bool {
			if limit > 0 && len(page.Found) == limit {
				page.Next = &Cursor{Dev: dev, Ino: ino, Offset: off + int64(len(line)) + 1}
				stop = true
				return false
			}
			t, ok := lineTime(line)
			if !ok {
				return true
			}
			if !q.Start.IsZero() && t.Before(q.Start.Add(-orderSlack)) {
				stop = true
				return false
			}
			if (!q.Start.IsZero() && t.Before(q.Start)) || (!q.End.IsZero() && t.After(q.End)) || !q.mayMatch(line) {
				return true
			}
			var ev Event
			if json.Unmarshal(line, &ev) != nil || ev.EventID == "" {
				return true
			}
			found := Found{Event: &ev, Raw: string(line), Time: t}
			if q.match(found) {
				page.Found = append(page.Found, found)
			}
			return true
		})
		f.Close()
		if err != nil {
			return page, fmt.Errorf("audit.Lookup %s: %w", path, err)
		}
		if stop {
			return page, nil
		}
	}
	return page, nil
}

// identity is a file's device and inode numbers and its size.
func identity(f *os.File) (dev, ino uint64, size int64, err error) {
	st, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		dev, ino = uint64(sys.Dev), sys.Ino
	}
	return dev, ino, st.Size(), nil
}

// maxLine bounds one trail line (an event is a few KB; its request
// parameters are bounded by the API's body limits).
const maxLine = 16 << 20

// readBackwards calls fn for each complete line of f before offset end,
// last line first, with the offset the line starts at, until fn returns
// false. A partial last line (a write in progress) is skipped.
func readBackwards(f *os.File, end int64, fn func(line []byte, off int64) bool) error {
	var buf []byte // the unread part of the file before end: f[pos:end), less what fn has had
	pos := end
	// The text after the last newline is a line in progress: skip it.
	first := true
	for {
		for i := bytes.LastIndexByte(buf, '\n'); i >= 0; i = bytes.LastIndexByte(buf, '\n') {
			line := buf[i+1:]
			if len(line) > maxLine {
				return fmt.Errorf("a line of more than %d bytes at offset %d", maxLine, pos+int64(i)+1)
			}
			if first {
				first = false
			} else if len(line) > 0 && !fn(line, pos+int64(i)+1) {
				return nil
			}
			buf = buf[:i]
		}
		if pos == 0 {
			if len(buf) > maxLine {
				return fmt.Errorf("a line of more than %d bytes at offset 0", maxLine)
			}
			if len(buf) > 0 && !first {
				fn(buf, 0)
			}
			return nil
		}
		if len(buf) > maxLine {
			return fmt.Errorf("a line of more than %d bytes before offset %d", maxLine, pos+int64(len(buf)))
		}
		// Read at least as much again as the partial line held, so a long
		// line costs linear time.
		n := max(int64(64<<10), int64(len(buf)))
		n = min(n, pos)
		next := make([]byte, int(n)+len(buf))
		if _, err := f.ReadAt(next[:n], pos-n); err != nil && err != io.EOF {
			return err
		}
		copy(next[n:], buf)
		buf, pos = next, pos-n
	}
}

// lineTime reads the eventTime of a trail line without decoding the rest.
func lineTime(line []byte) (time.Time, bool) {
	const key = `"eventTime":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, string(rest[:j]))
	return t, err == nil
}

// mayMatch is a cheap test before decoding a line: false when the line
// cannot hold q's account or value (both appear verbatim in the JSON when
// they hold no character JSON escapes).
func (q Query) mayMatch(line []byte) bool {
	value := q.Value
	switch q.Key {
	case AttrReadOnly, AttrUsername:
		value = "" // derived or normalised: not verbatim in the line
	}
	for _, v := range []string{q.AccountID, value} {
		if v == "" || !plain(v) {
			continue
		}
		if !bytes.Contains(line, []byte(v)) {
			return false
		}
	}
	return true
}

// plain reports whether s is written as is inside a JSON string.
func plain(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}
