package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// appendEvent must write exactly what encoding/json writes for the same
// Event: readers (LookupEvents, tools) and the golden files see one format.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	e := newTestEncoder(t)
	check := func(name string, ev *Event) {
		t.Helper()
		want, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, ok := appendEvent(nil, ev)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s (ok=%v):\n got %s\nwant %s", name, ok, got, want)
		}
	}
	for _, tc := range cases(t) {
		check(tc.name, e.Event(&tc.rec))
	}
	odd := "<script>&\"\\\x00\x01\b\f\n\r\t\x7f\u2028\u2029 é \xff\xfe 日本"
	ev := e.Event(&cases(t)[0].rec)
	ev.UserAgent, ev.ErrorMessage, ev.ErrorCode = odd, odd, odd
	ev.UserIdentity.SessionContext = &SessionContext{SessionIssuer{Type: "Role", ARN: odd}}
	ev.RequestParameters = map[string]any{odd: []any{json.Number("-1.5e+10"), json.Number("0"), json.Number(""), true, nil,
		map[string]any{}, []any{}, map[string]any{"b": "x", "a": odd, "B": false}}}
	ev.ResponseElements = []any(nil)
	check("odd strings and values", ev)

	ev.RequestParameters = map[string]any{"n": json.Number("01")}
	if _, ok := appendEvent(nil, ev); ok {
		t.Error("an invalid json.Number was encoded; encoding/json refuses it")
	}
	ev.RequestParameters = map[string]any{"n": 3}
	if _, ok := appendEvent(nil, ev); ok {
		t.Error("a type render never produces was encoded")
	}
	if b, err := e.Marshal(&Record{Operation: "X"}); err != nil || !json.Valid(b) {
		t.Errorf("Marshal: %s, %v", b, err)
	}
}

func FuzzValidNumber(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5", "1e5", "1E+5", "-1.5e-3", "01", "1.", ".5", "-", "1e", "+1", "0x1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := json.Marshal(json.Number(s))
		if s != "" && validNumber(s) != (err == nil) {
			t.Fatalf("validNumber(%q) = %v, encoding/json error %v", s, validNumber(s), err)
		}
	})
}

// The streaming renderer must render what the map renderer renders.
func checkStreaming(t *testing.T, e *Encoder, prefix, op string, body []byte) {
	t.Helper()
	src := e.sources[prefix]
	o, ok := src.ops[op]
	if !ok {
		return
	}
	for _, shape := range []string{o.Input, o.Output, ""} {
		want := src.render(shape, parseObject(body), nil)
		got, refs := src.readBody(shape, body)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %s: streaming render of %q:\n got %#v\nwant %#v", op, shape, body, got, want)
		}
		if want := refsFromMap(parseObject(body)); refs != want {
			t.Fatalf("%s: key refs of %q: got %+v, want %+v", op, body, refs, want)
		}
	}
}

func TestStreamingRenderMatchesMapRender(t *testing.T) {
	e := newTestEncoder(t)
	for _, tc := range cases(t) {
		prefix := tc.rec.TargetPrefix
		if prefix == "" {
			prefix = "TrentService"
		}
		checkStreaming(t, e, prefix, tc.rec.Operation, tc.rec.Request)
		checkStreaming(t, e, prefix, tc.rec.Operation, tc.rec.Response)
	}
	for _, body := range []string{
		`{"KeyId":"a","KeyId":null,"EncryptionContext":{"k":"v","k":1},"GrantTokens":["x",null,3]}`,
		`{"KeyMetadata":{"Arn":"arn:aws:kms:us-east-1:111122223333:key/x","Arn":5,"CreationDate":1.5e9,"Enabled":true,"KeyId":"k\u00e9\"<"}}`,
		`{"Tags":[{"TagKey":"a","TagValue":"\ud800"}],"Policy":"\u2028","Description":"\xff"}`,
		`{"KeyId":"a"} }`, `[1]`, `null`, ` `, `{"KeyId":`, `{}`, `{"Plaintext":"QUJD","KeyId":"k","Extra":{"a":[1]}}`,
	} {
		for _, op := range []string{"Encrypt", "CreateKey", "DescribeKey", "TagResource", "ReEncrypt", "ListKeys"} {
			checkStreaming(t, e, "TrentService", op, []byte(body))
		}
	}
}

func FuzzStreamingRender(f *testing.F) {
	e, err := NewEncoder(Config{Region: "us-east-1", AccountID: account})
	if err != nil {
		f.Fatal(err)
	}
	f.Add("CreateKey", []byte(`{"Description":"d","Tags":[{"TagKey":"k","TagValue":"v"}],"KeyUsage":"ENCRYPT_DECRYPT"}`))
	f.Add("CreateCustomKeyStore", []byte(`{"CustomKeyStoreName":"n","KeyStorePassword":"secret","XksProxyAuthenticationCredential":{"AccessKeyId":"A","RawSecretAccessKey":"S"}}`))
	f.Add("ReEncrypt", []byte(`{"CiphertextBlob":"QUJD","DestinationKeyId":"alias/x","SourceEncryptionContext":{"a":"b"}}`))
	f.Fuzz(func(t *testing.T, op string, body []byte) {
		checkStreaming(t, e, "TrentService", op, body)
	})
}

func TestSplitARNAndKeyID(t *testing.T) {
	for _, s := range []string{"arn:aws:kms:us-east-1:111122223333:key/x", "arn:aws:iam::111122223333:user/a:b", "a:b:c:d:e", "a:b:c:d:e:", "", ":::::"} {
		got, ok := splitARN(s)
		want := strings.SplitN(s, ":", 6)
		if ok != (len(want) == 6) || ok && got != [6]string(want) {
			t.Errorf("splitARN(%q) = %q %v, want %q", s, got, ok, want)
		}
	}
	for s, want := range map[string]bool{keyUUID: true, "mrk-" + strings.ReplaceAll(keyUUID, "-", ""): true, strings.ToUpper(keyUUID): true,
		"1234abcd-12ab-34cd-56ef-1234567890ag": false, "1234abcd12ab34cd56ef1234567890a": false, "alias/x": false, "": false} {
		if got := isKeyID(s); got != want {
			t.Errorf("isKeyID(%q) = %v", s, got)
		}
	}
}

// checkDirect: the direct encoder writes json.Marshal(Event(r)) byte for
// byte, or leaves r to the Event path.
func checkDirect(t *testing.T, e *Encoder, r *Record) {
	t.Helper()
	got, ok := e.appendDirect(nil, r)
	if !ok {
		if r.ErrorMessage == "" {
			t.Fatalf("%s %q: the direct encoder gave up", r.Operation, r.Request)
		}
		return
	}
	want, err := json.Marshal(e.Event(r))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s request %q response %q:\n got %s\nwant %s", r.Operation, r.Request, r.Response, got, want)
	}
}

func TestAppendMatchesEvent(t *testing.T) {
	e := newTestEncoder(t)
	for _, tc := range cases(t) {
		r := tc.rec
		checkDirect(t, e, &r)
		r.ErrorMessage = ""
		checkDirect(t, e, &r)
	}
	base := cases(t)[0].rec
	for _, body := range streamingBodies {
		for _, op := range []string{"Encrypt", "CreateKey", "DescribeKey", "TagResource", "ReEncrypt", "ListKeys", "ListGrants", "Nope"} {
			for _, code := range []string{"", "NotFoundException"} {
				r := base
				r.Operation, r.Request, r.Response, r.ErrorCode = op, []byte(body), []byte(body), code
				checkDirect(t, e, &r)
				r.TargetPrefix = "BaldrApiService"
				checkDirect(t, e, &r)
				r.TargetPrefix = ""
				checkDirect(t, e, &r)
			}
		}
	}
	// Random event ids: a version 4 UUID in the line.
	e2, err := NewEncoder(Config{Region: "us-east-1", AccountID: account})
	if err != nil {
		t.Fatal(err)
	}
	line, err := e2.Marshal(&base)
	if err != nil {
		t.Fatal(err)
	}
	var ev Event
	if err := json.Unmarshal(line, &ev); err != nil {
		t.Fatal(err)
	}
	if id := ev.EventID; len(id) != 36 || id[14] != '4' || !isKeyID(id) || strings.ContainsAny(id, "ABCDEF") {
		t.Errorf("event id %q is not a random UUID", id)
	}
}

var streamingBodies = []string{
	`{"KeyId":"a","KeyId":null,"EncryptionContext":{"k":"v","k":1},"GrantTokens":["x",null,3]}`,
	`{"KeyMetadata":{"Arn":"arn:aws:kms:us-east-1:111122223333:key/x","Arn":5,"CreationDate":1.5e9,"Enabled":true,"KeyId":"k\u00e9\"<"}}`,
	`{"Tags":[{"TagKey":"a","TagValue":"\ud800"}],"Policy":"\u2028","Description":"\xff"}`,
	`{"KeyId":"a"} }`, `[1]`, `null`, ` `, `{"KeyId":`, `{}`, `{"Plaintext":"QUJD","KeyId":"k","Extra":{"a":[1]}}`,
	`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"QUJD","EncryptionContext":{"z":"1","a":"2","m":null}}`,
	`{"Plaintext":"QUJD","KeyId":"arn:aws:kms:us-west-2:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab"}`,
	`{"Keys":[{"KeyId":"k1","KeyArn":"arn:aws:kms:us-east-1:111122223333:key/k1"}],"Truncated":false,"NextMarker":"m"}`,
	`{"Grants":[{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/g","GrantId":"g1","Constraints":{"EncryptionContextSubset":{"b":"1","a":"2"}}}]}`,
	`{"Description":"d","KeyUsage":"ENCRYPT_DECRYPT","Tags":[{"TagValue":"v","TagKey":"k"},{"TagKey":"k2"}],"MultiRegion":true,"BypassPolicyLockoutSafetyCheck":false}`,
	`{"CiphertextBlob":"QUJD","SourceKeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","DestinationKeyId":"alias/x","KeyId":"arn:aws:kms:us-east-1:111122223333:key/d"}`,
	`{"KeyId":"a","KeyId":"b","KeyId":5}`, `{"EncryptionContext":{"b":"1","a":"2","b":3}}`, `{"EncryptionContext":{}}`, `{"GrantTokens":[]}`,
}

func FuzzAppendMatchesEvent(f *testing.F) {
	e, err := NewEncoder(Config{Region: "us-east-1", AccountID: account, NewEventID: func() string { return "id" }})
	if err != nil {
		f.Fatal(err)
	}
	ops := []string{"Encrypt", "CreateKey", "DescribeKey", "TagResource", "ReEncrypt", "ListKeys", "ListGrants",
		"CreateGrant", "PutKeyPolicy", "CreateCustomKeyStore", "GenerateDataKey", "Decrypt", "ListAliases", "Nope"}
	for i, b := range streamingBodies {
		f.Add(uint8(i), []byte(b), []byte(b), false)
		f.Add(uint8(i+1), []byte(b), []byte(b), true)
	}
	base := cases(f)[0].rec
	f.Fuzz(func(t *testing.T, op uint8, req, resp []byte, failed bool) {
		r := base
		r.Operation, r.Request, r.Response = ops[int(op)%len(ops)], req, resp
		if failed {
			r.ErrorCode = "ValidationException"
		}
		checkDirect(t, e, &r)
	})
}
