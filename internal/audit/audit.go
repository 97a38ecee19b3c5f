// Package audit is keyhold's audit trail: it turns what the listener knows
// about one API request into an event in CloudTrail's record format and
// appends it durably to a JSON-lines file.
//
// It must never write a secret: request and response bodies are walked
// against the service model, and only members the model declares, of a
// non-sensitive, non-blob shape, are kept (sensitive strings are replaced by
// CloudTrail's placeholder; blobs — plaintexts, ciphertexts, data keys — are
// dropped). Anything it cannot read against the model becomes null.
//
// It knows nothing of HTTP or of the domain: internal/cli adapts the
// listener's record to Record.
package audit

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/blob"
)

// models/ holds byte-identical copies of the API packages' embedded models
// (models_test.go fails if they drift): those packages do not export the raw
// bytes and awsjson.Model does not expose its shapes.
//
//go:embed models/kms.json models/cloudhsmv2.json
var modelFS embed.FS

// Record is one API request as the listener saw it, allowed or denied.
// Request and Response are the raw JSON bodies; they may hold plaintext,
// key material and secrets.
type Record struct {
	Time         time.Time
	TargetPrefix string // "TrentService", "BaldrApiService"; "" when unknown
	Operation    string
	Caller       awsjson.Caller // zero when authentication failed
	AccessKeyID  string         // as claimed in the signature, even if unknown
	SourceIP     string
	UserAgent    string
	RequestID    string
	Request      []byte
	Response     []byte // nil on error
	ErrorCode    string
	ErrorMessage string
	// Region is the Region the request was for ("" = the trail's own).
	Region string
}

// Event is one CloudTrail record (eventVersion 1.08). Field order is
// CloudTrail's.
type Event struct {
	EventVersion       string       `json:"eventVersion"`
	UserIdentity       UserIdentity `json:"userIdentity"`
	EventTime          string       `json:"eventTime"`
	EventSource        string       `json:"eventSource"`
	EventName          string       `json:"eventName"`
	AWSRegion          string       `json:"awsRegion"`
	SourceIPAddress    string       `json:"sourceIPAddress"`
	UserAgent          string       `json:"userAgent"`
	ErrorCode          string       `json:"errorCode,omitempty"`
	ErrorMessage       string       `json:"errorMessage,omitempty"`
	RequestParameters  any          `json:"requestParameters"`
	ResponseElements   any          `json:"responseElements"`
	RequestID          string       `json:"requestID"`
	EventID            string       `json:"eventID"`
	ReadOnly           bool         `json:"readOnly"`
	Resources          []Resource   `json:"resources,omitempty"`
	EventType          string       `json:"eventType"`
	ManagementEvent    bool         `json:"managementEvent"`
	RecipientAccountID string       `json:"recipientAccountId"`
	EventCategory      string       `json:"eventCategory"`
}

// UserIdentity is CloudTrail's userIdentity element.
type UserIdentity struct {
	Type           string          `json:"type"`
	PrincipalID    string          `json:"principalId,omitempty"`
	ARN            string          `json:"arn,omitempty"`
	AccountID      string          `json:"accountId,omitempty"`
	AccessKeyID    string          `json:"accessKeyId,omitempty"`
	UserName       string          `json:"userName,omitempty"`
	SessionContext *SessionContext `json:"sessionContext,omitempty"`
}

// SessionContext describes the role behind an assumed-role session.
type SessionContext struct {
	SessionIssuer SessionIssuer `json:"sessionIssuer"`
}

// SessionIssuer is the role an assumed-role session was issued from.
type SessionIssuer struct {
	Type        string `json:"type"`
	PrincipalID string `json:"principalId,omitempty"`
	ARN         string `json:"arn"`
	AccountID   string `json:"accountId"`
	UserName    string `json:"userName"`
}

// Resource is one element of an event's resources list.
type Resource struct {
	AccountID string `json:"accountId"`
	Type      string `json:"type"`
	ARN       string `json:"ARN"`
}

// Hidden replaces the value of a sensitive member, as CloudTrail does.
const Hidden = "HIDDEN_DUE_TO_SECURITY_REASONS"

// Source is one service the audit trail knows how to read.
type Source struct {
	TargetPrefix string // X-Amz-Target prefix, "TrentService"
	EventSource  string // "kms.amazonaws.com"
	Model        []byte // the AWS JSON service model
}

// DefaultSources are KMS and the CloudHSM control plane, with the models
// keyhold serves.
func DefaultSources() []Source {
	k, _ := modelFS.ReadFile("models/kms.json")
	h, _ := modelFS.ReadFile("models/cloudhsmv2.json")
	return []Source{
		{TargetPrefix: "TrentService", EventSource: "kms.amazonaws.com", Model: k},
		{TargetPrefix: "BaldrApiService", EventSource: "cloudhsm.amazonaws.com", Model: h},
	}
}

// Config builds an Encoder.
type Config struct {
	Region string
	// AccountID is the recipient account when neither a resource nor the
	// caller names one (requests that failed authentication).
	AccountID string
	// Sources defaults to DefaultSources.
	Sources []Source
	// NewEventID defaults to a random UUID; tests pin it.
	NewEventID func() string
}

// Encoder turns Records into Events. It is safe for concurrent use.
type Encoder struct {
	cfg     Config
	sources map[string]*source
	// randomIDs: event ids are random UUIDs (Config.NewEventID unset),
	// which the direct encoder appends without making a string.
	randomIDs bool
}

type source struct {
	eventSource string
	ops         map[string]modelOp
	shapes      map[string]*shape
}

type modelOp struct {
	Input  string `json:"input"`
	Output string `json:"output"`
}

type shapeRef struct {
	Shape string `json:"shape"`
}

type shape struct {
	Type      string              `json:"type"`
	Members   map[string]shapeRef `json:"members"`
	Member    *shapeRef           `json:"member"`
	Value     *shapeRef           `json:"value"`
	Sensitive bool                `json:"sensitive"`
	// lower maps a structure's member names to CloudTrail's
	// (lowerCamelCase), computed once.
	lower map[string]string
}

// extraSensitive are shapes the models do not mark sensitive but that hold
// secrets: the CloudHSM cluster's pre-activation crypto officer password.
var extraSensitive = map[string]bool{"PreCoPassword": true}

// revealed are sensitive shapes that are identifiers, not secrets: CloudTrail
// shows an XKS credential's access key id and hides only its secret.
var revealed = map[string]bool{"XksProxyAuthenticationAccessKeyIdType": true}

// NewEncoder parses the sources' models.
func NewEncoder(cfg Config) (*Encoder, error) {
	if cfg.Sources == nil {
		cfg.Sources = DefaultSources()
	}
	random := cfg.NewEventID == nil
	if random {
		cfg.NewEventID = newUUID
	}
	e := &Encoder{cfg: cfg, sources: make(map[string]*source), randomIDs: random}
	for _, s := range cfg.Sources {
		var raw struct {
			Operations map[string]modelOp `json:"operations"`
			Shapes     map[string]*shape  `json:"shapes"`
		}
		if err := json.Unmarshal(s.Model, &raw); err != nil {
			return nil, fmt.Errorf("audit.NewEncoder: model for %s: %w", s.TargetPrefix, err)
		}
		for name, sh := range raw.Shapes {
			if extraSensitive[name] {
				sh.Sensitive = true
			}
			if revealed[name] {
				sh.Sensitive = false
			}
			if len(sh.Members) > 0 {
				sh.lower = make(map[string]string, len(sh.Members))
				for m := range sh.Members {
					sh.lower[m] = lowerFirst(m)
				}
			}
		}
		e.sources[s.TargetPrefix] = &source{eventSource: s.EventSource, ops: raw.Operations, shapes: raw.Shapes}
	}
	return e, nil
}

// region is the Region of r's event: the request's, or the trail's own.
func (e *Encoder) region(r *Record) string {
	if r.Region != "" {
		return r.Region
	}
	return e.cfg.Region
}

// Marshal encodes r as one JSON line (without the newline).
func (e *Encoder) Marshal(r *Record) ([]byte, error) {
	if b, ok := e.appendDirect(make([]byte, 0, 1024), r); ok {
		return b, nil
	}
	ev := e.Event(r)
	if b, ok := appendEvent(make([]byte, 0, 1024), ev); ok {
		return b, nil
	}
	return json.Marshal(ev)
}

// Event builds the CloudTrail event for r.
func (e *Encoder) Event(r *Record) *Event {
	ev := &Event{
		EventVersion:    "1.08",
		UserIdentity:    identityOf(r),
		EventTime:       r.Time.UTC().Format(time.RFC3339),
		EventSource:     "kms.amazonaws.com",
		EventName:       r.Operation,
		AWSRegion:       e.region(r),
		SourceIPAddress: r.SourceIP,
		UserAgent:       r.UserAgent,
		ErrorCode:       errorCode(r.ErrorCode),
		ErrorMessage:    r.ErrorMessage,
		RequestID:       r.RequestID,
		EventID:         e.cfg.NewEventID(),
		ReadOnly:        readOnly(r.Operation),
		EventType:       "AwsApiCall",
		ManagementEvent: true,
		EventCategory:   "Management",
	}
	src := e.sources[r.TargetPrefix]
	var reqRefs, respRefs keyRefs
	var ids responseIDs
	if src != nil {
		ev.EventSource = src.eventSource
		if op, ok := src.ops[r.Operation]; ok {
			readResponse := r.ErrorCode == "" && !ev.ReadOnly
			if r.ErrorCode == "" && ev.ReadOnly {
				// Not rendered: only the key ids are needed, and they can
				// be found without reading the (large) blobs.
				ids = parseIDs(r.Response)
			}
			if ev.ErrorMessage == "" {
				// The common case: read the bodies in place.
				ev.RequestParameters, reqRefs = src.readBody(op.Input, r.Request)
				if readResponse {
					ev.ResponseElements, respRefs = src.readBody(op.Output, r.Response)
				}
			} else {
				// An error message may echo a value the event drops or
				// hides: collect those to scrub it.
				var dropped []string
				req := parseObject(r.Request)
				ev.RequestParameters = src.render(op.Input, req, &dropped)
				reqRefs = refsFromMap(req)
				if readResponse {
					if resp := parseObject(r.Response); resp != nil {
						ev.ResponseElements = src.render(op.Output, resp, &dropped)
						respRefs = refsFromMap(resp)
					}
				}
				ev.ErrorMessage = scrub(ev.ErrorMessage, dropped)
			}
		}
	}
	if r.TargetPrefix == "TrentService" {
		ev.Resources = e.keyResources(r, reqRefs, respRefs, ids)
	}
	ev.RecipientAccountID = r.Caller.AccountID
	if len(ev.Resources) > 0 {
		ev.RecipientAccountID = ev.Resources[0].AccountID
	}
	if ev.RecipientAccountID == "" {
		ev.RecipientAccountID = e.cfg.AccountID
	}
	return ev
}

// errorCode strips a namespace ("com.amazonaws.kms#NotFoundException").
func errorCode(c string) string {
	if i := strings.LastIndexByte(c, '#'); i >= 0 {
		return c[i+1:]
	}
	return c
}

// readOnly follows CloudTrail's classification for KMS and CloudHSM:
// Describe/List/Get calls and the cryptographic operations are read-only.
func readOnly(op string) bool {
	for _, p := range []string{"Describe", "List", "Get"} {
		if strings.HasPrefix(op, p) {
			return true
		}
	}
	switch op {
	case "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext",
		"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateRandom",
		"Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret":
		return true
	}
	return false
}

func identityOf(r *Record) UserIdentity {
	c := r.Caller
	ak := c.AccessKeyID
	if ak == "" {
		ak = r.AccessKeyID
	}
	if c.ARN == "" {
		return UserIdentity{Type: "Unknown", AccessKeyID: ak}
	}
	id := UserIdentity{ARN: c.ARN, AccountID: c.AccountID, AccessKeyID: ak, PrincipalID: c.UserID}
	parts, ok := splitARN(c.ARN)
	if !ok {
		id.Type = "Unknown"
		return id
	}
	if id.AccountID == "" {
		id.AccountID = parts[4]
	}
	svc, res := parts[2], parts[5]
	switch {
	case svc == "iam" && res == "root":
		id.Type = "Root"
		if id.PrincipalID == "" {
			id.PrincipalID = id.AccountID
		}
	case svc == "iam" && strings.HasPrefix(res, "user/"):
		id.Type = "IAMUser"
		id.UserName = res[strings.LastIndexByte(res, '/')+1:]
	case svc == "sts" && strings.HasPrefix(res, "assumed-role/"):
		id.Type = "AssumedRole"
		seg := strings.Split(res, "/")
		if len(seg) >= 3 {
			role := seg[1]
			roleID, _, _ := strings.Cut(c.UserID, ":")
			id.SessionContext = &SessionContext{SessionIssuer: SessionIssuer{
				Type: "Role", PrincipalID: roleID, ARN: "arn:" + parts[1] + ":iam::" + id.AccountID + ":role/" + role,
				AccountID: id.AccountID, UserName: role}}
		}
	case id.AccountID != "":
		id.Type = "AWSAccount"
	default:
		id.Type = "Unknown"
	}
	return id
}

// responseIDs are the members of a response that name keys.
type responseIDs struct {
	KeyId       string
	SourceKeyId string
	KeyMetadata struct{ Arn string }
}

// parseIDs finds the key ids of a response keyhold itself encoded
// (encoding/json, no whitespace, ARNs need no escaping) by looking for the
// members instead of decoding the whole body: for a crypto response most of
// the body is a blob. keyResources checks every value it uses.
func parseIDs(b []byte) responseIDs {
	ids := parseIDsView(b)
	ids.KeyId = strings.Clone(ids.KeyId)
	ids.SourceKeyId = strings.Clone(ids.SourceKeyId)
	ids.KeyMetadata.Arn = strings.Clone(ids.KeyMetadata.Arn)
	return ids
}

// keyResources lists the keys an event touched: ARNs from the response
// (KeyId, KeyMetadata.Arn, SourceKeyId) and from the request's key ids when
// they are ARNs or bare key ids (which name a key in the caller's account
// and this region). Aliases are not resolved.
func (e *Encoder) keyResources(r *Record, req, resp keyRefs, ids responseIDs) []Resource {
	return e.keyResourcesInto(nil, r, req, resp, ids)
}

// isKeyID reports whether s looks like a bare key id (a UUID, possibly with
// the multi-Region "mrk-" prefix).
func isKeyID(s string) bool {
	s = strings.TrimPrefix(s, "mrk-")
	if len(s) == 32 {
		return isHex(s)
	}
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	return isHex(s[0:8]) && isHex(s[9:13]) && isHex(s[14:18]) && isHex(s[19:23]) && isHex(s[24:])
}

// isHex reports whether s is an even number of hex digits (what
// hex.DecodeString accepts).
func isHex(s string) bool {
	if len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// splitARN is strings.SplitN(arn, ":", 6) when that yields six parts,
// without allocating.
func splitARN(arn string) (parts [6]string, ok bool) {
	rest := arn
	for i := 0; i < 5; i++ {
		j := strings.IndexByte(rest, ':')
		if j < 0 {
			return parts, false
		}
		parts[i], rest = rest[:j], rest[j+1:]
	}
	parts[5] = rest
	return parts, true
}

// parseObject decodes a JSON object body; anything else is nil.
func parseObject(b []byte) map[string]any {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || dec.More() {
		return nil
	}
	return m
}

// render keeps what the model says v holds under shapeName, renamed to
// CloudTrail's lowerCamelCase member names. An empty structure at the top
// is null, as CloudTrail shows calls without parameters.
func (s *source) render(shapeName string, v map[string]any, dropped *[]string) any {
	if v == nil || shapeName == "" {
		return nil
	}
	out, ok := s.value(shapeName, v, dropped)
	if m, isMap := out.(map[string]any); !ok || (isMap && len(m) == 0) {
		return nil
	}
	return out
}

// value renders v against shape name; ok is false when the member must be
// dropped (unknown shape, wrong type, blob). The strings of what it drops or
// hides are added to dropped, so that an error message echoing one can be
// scrubbed.
func (s *source) value(name string, v any, dropped *[]string) (any, bool) {
	sh := s.shapes[name]
	if sh == nil || v == nil {
		collect(v, dropped)
		return nil, false
	}
	if sh.Type == "blob" {
		collect(v, dropped)
		return nil, false
	}
	if sh.Sensitive {
		collect(v, dropped)
		return Hidden, true
	}
	switch sh.Type {
	case "structure":
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		out := make(map[string]any, len(obj))
		for k, mv := range obj {
			ref, known := sh.Members[k]
			if !known {
				collect(mv, dropped)
				continue
			}
			if rv, ok := s.value(ref.Shape, mv, dropped); ok {
				out[lowerFirst(k)] = rv
			}
		}
		return out, true
	case "list":
		arr, ok := v.([]any)
		if !ok || sh.Member == nil {
			return nil, false
		}
		out := make([]any, 0, len(arr))
		for _, e := range arr {
			if rv, ok := s.value(sh.Member.Shape, e, dropped); ok {
				out = append(out, rv)
			}
		}
		return out, true
	case "map":
		obj, ok := v.(map[string]any)
		if !ok || sh.Value == nil {
			return nil, false
		}
		out := make(map[string]any, len(obj))
		for k, mv := range obj {
			if rv, ok := s.value(sh.Value.Shape, mv, dropped); ok {
				out[k] = rv
			}
		}
		return out, true
	case "string":
		str, ok := v.(string)
		return str, ok
	case "boolean":
		b, ok := v.(bool)
		return b, ok
	case "integer", "long", "double", "float":
		n, ok := v.(json.Number)
		return n, ok
	case "timestamp":
		n, ok := v.(json.Number)
		if !ok {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return nil, false
		}
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC().Format(cloudTrailDate), true
	}
	return nil, false
}

// collect adds the strings inside v to dropped (when not nil).
func collect(v any, dropped *[]string) {
	if dropped == nil {
		return
	}
	switch t := v.(type) {
	case string:
		*dropped = append(*dropped, t)
	case map[string]any:
		for _, e := range t {
			collect(e, dropped)
		}
	case []any:
		for _, e := range t {
			collect(e, dropped)
		}
	}
}

// scrub removes from an error message any value the event dropped or hid,
// whole or as the 128-character prefix validation messages quote. Short
// values are left alone: they cannot carry a secret worth the mangling.
func scrub(msg string, dropped []string) string {
	for _, d := range dropped {
		if len(d) < 6 || msg == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, d, Hidden)
		if len(d) > 128 {
			msg = strings.ReplaceAll(msg, d[:128], Hidden)
		}
	}
	return msg
}

// cloudTrailDate is how CloudTrail prints timestamps inside request and
// response elements ("Jul 14, 2020, 11:14:50 PM").
const cloudTrailDate = "Jan 2, 2006, 3:04:05 PM"

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func newUUID() string { return blob.FormatUUID(randomUUID()) }

// randomUUID is a random (version 4) UUID.
func randomUUID() [16]byte {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}
