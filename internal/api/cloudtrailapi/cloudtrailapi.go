// Package cloudtrailapi serves CloudTrail's LookupEvents (JSON 1.1, target
// prefix com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101, signing
// name cloudtrail) over keyhold's audit trail, so that
// `aws cloudtrail lookup-events --endpoint-url ...` reads it.
//
// Callers see only the events of their own account. There is no index: a
// call reads the trail backwards from its end (or from where its
// NextToken stopped) until its page is full or the events are older than
// its StartTime, so recent pages cost little however long the trail is;
// a selective query over old events reads what lies between.
package cloudtrailapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/audit"
	"github.com/keyhold/keyhold/internal/awsjson"
)

// TargetPrefix is CloudTrail's X-Amz-Target prefix.
const TargetPrefix = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101"

// maxResults is LookupEvents' page size bound and default.
const maxResults = 50

type lookupAttribute struct {
	AttributeKey   *string
	AttributeValue *string
}

type lookupRequest struct {
	LookupAttributes []lookupAttribute
	StartTime        *epoch
	EndTime          *epoch
	EventCategory    *string
	MaxResults       *int
	NextToken        *string
}

// epoch is a JSON 1.1 timestamp: seconds since the epoch, fractional.
type epoch struct{ time.Time }

func (e *epoch) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("timestamp %s is not a number of seconds", b)
	}
	sec, frac := math.Modf(f)
	e.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

type resource struct {
	ResourceType string `json:"ResourceType,omitempty"`
	ResourceName string `json:"ResourceName,omitempty"`
}

type event struct {
	EventID         string     `json:"EventId"`
	EventName       string     `json:"EventName"`
	ReadOnly        string     `json:"ReadOnly"`
	AccessKeyID     string     `json:"AccessKeyId,omitempty"`
	EventTime       float64    `json:"EventTime"`
	EventSource     string     `json:"EventSource"`
	Username        string     `json:"Username,omitempty"`
	Resources       []resource `json:"Resources"`
	CloudTrailEvent string     `json:"CloudTrailEvent"`
}

type lookupResponse struct {
	Events    []event `json:"Events"`
	NextToken *string `json:"NextToken,omitempty"`
}

func invalid(typ, format string, args ...any) error {
	return &awsjson.Error{Type: typ, Status: 400, Message: fmt.Sprintf(format, args...)}
}

// New returns the operation table. trailPath is the audit file; rotated
// copies beside it are read too.
func New(trailPath string) *awsjson.Service {
	return awsjson.NewService(TargetPrefix, "cloudtrail", nil, awsjson.Operation{
		Name: "LookupEvents", Action: "cloudtrail:LookupEvents",
		Handle: func(ctx context.Context, c *awsjson.Call) (any, error) {
			return lookupEvents(trailPath, c)
		},
	})
}

func lookupEvents(trailPath string, c *awsjson.Call) (any, error) {
	var in lookupRequest
	if err := json.Unmarshal(c.Body, &in); err != nil {
		return nil, &awsjson.Error{Type: awsjson.SerializationException, Status: 400, Message: "Could not parse the request: " + err.Error()}
	}
	q := audit.Query{AccountID: c.Caller.AccountID}
	switch len(in.LookupAttributes) {
	case 0:
	case 1:
		a := in.LookupAttributes[0]
		if a.AttributeKey == nil || a.AttributeValue == nil {
			return nil, invalid("InvalidLookupAttributesException", "A lookup attribute needs an AttributeKey and an AttributeValue.")
		}
		if !slices.Contains(audit.LookupKeys, *a.AttributeKey) {
			return nil, invalid("InvalidLookupAttributesException", "Invalid AttributeKey %s: use one of %s.", *a.AttributeKey, strings.Join(audit.LookupKeys, ", "))
		}
		if *a.AttributeValue == "" || len(*a.AttributeValue) > 2000 {
			return nil, invalid("InvalidLookupAttributesException", "AttributeValue must be 1 to 2000 characters long.")
		}
		q.Key, q.Value = *a.AttributeKey, *a.AttributeValue
	default:
		return nil, invalid("InvalidLookupAttributesException", "You can specify only one lookup attribute.")
	}
	if in.StartTime != nil {
		q.Start = in.StartTime.Time
	}
	if in.EndTime != nil {
		q.End = in.EndTime.Time
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.Start.After(q.End) {
		return nil, invalid("InvalidTimeRangeException", "The start time must not be after the end time.")
	}
	if in.EventCategory != nil {
		if *in.EventCategory != "insight" {
			return nil, invalid("InvalidEventCategoryException", "Invalid EventCategory %s: the valid value is insight.", *in.EventCategory)
		}
		// keyhold records no Insights events: an empty list, as for an
		// account without Insights.
		return lookupResponse{Events: []event{}}, nil
	}
	limit := maxResults
	if in.MaxResults != nil {
		if *in.MaxResults < 1 || *in.MaxResults > maxResults {
			return nil, invalid("InvalidMaxResultsException", "MaxResults must be between 1 and 50.")
		}
		limit = *in.MaxResults
	}
	// The token is where the previous page stopped in the trail plus a
	// digest of the query it belongs to, so that a token used with other
	// parameters is refused as CloudTrail does. Events appended since do
	// not shift the pages: they are newer than the first page.
	digest := queryDigest(q)
	var from *audit.Cursor
	if in.NextToken != nil {
		c, ok := parseToken(*in.NextToken, digest)
		if !ok {
			return nil, invalid("InvalidNextTokenException", "The NextToken is not valid for these parameters.")
		}
		from = &c
	}
	files, err := audit.TrailFiles(trailPath)
	if err != nil {
		return nil, err
	}
	page, err := audit.Lookup(files, q, from, limit)
	if err != nil {
		return nil, err
	}
	out := lookupResponse{Events: []event{}}
	for _, f := range page.Found {
		ev := f.Event
		e := event{EventID: ev.EventID, EventName: ev.EventName, ReadOnly: strconv.FormatBool(ev.ReadOnly),
			AccessKeyID: ev.UserIdentity.AccessKeyID, EventTime: float64(f.Time.Unix()), EventSource: ev.EventSource,
			Username: ev.Username(), Resources: []resource{}, CloudTrailEvent: f.Raw}
		for _, r := range ev.Resources {
			e.Resources = append(e.Resources, resource{ResourceType: r.Type, ResourceName: r.ARN})
		}
		out.Events = append(out.Events, e)
	}
	if page.Next != nil {
		t := makeToken(*page.Next, digest)
		out.NextToken = &t
	}
	return out, nil
}

func queryDigest(q audit.Query) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%s\x00%s\x00%d\x00%d", q.AccountID, q.Key, q.Value, q.Start.UnixNano(), q.End.UnixNano())))
	return base64.RawURLEncoding.EncodeToString(h[:9])
}

func makeToken(c audit.Cursor, digest string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("2:%d:%d:%d:%s", c.Dev, c.Ino, c.Offset, digest)))
}

func parseToken(tok, digest string) (audit.Cursor, bool) {
	var c audit.Cursor
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return c, false
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 5 || parts[0] != "2" || parts[4] != digest {
		return c, false
	}
	var e1, e2, e3 error
	c.Dev, e1 = strconv.ParseUint(parts[1], 10, 64)
	c.Ino, e2 = strconv.ParseUint(parts[2], 10, 64)
	c.Offset, e3 = strconv.ParseInt(parts[3], 10, 64)
	return c, e1 == nil && e2 == nil && e3 == nil && c.Offset >= 0
}
