package awsjson

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/keyhold/keyhold/internal/jsonscan"
)

// The fast check may only ever say "certainly fine" for bodies the full walk
// accepts; everything else goes to the full walk, which words the errors.
// These tests hold it to that on the KMS model with generated bodies (valid
// ones, and ones broken in every way the walk checks), and make sure the
// common requests do take the fast path.

func kmsModel(t testing.TB) *Model {
	t.Helper()
	b, err := os.ReadFile("../api/kmsapi/kms-model.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// agree checks the one-way contract for body against op and reports whether
// the fast check accepted it.
func agree(t testing.TB, m *Model, op string, body []byte) bool {
	t.Helper()
	o := m.ops[op]
	if o.Input == "" || !json.Valid(body) {
		return false
	}
	sc := scanner{jsonscan.Scanner{B: body}}
	fast := sc.fastOK(m.shapes[o.Input])
	if fast {
		if err := m.checkBody(o, body); err != nil {
			t.Fatalf("%s: fast check accepted a body the model walk rejects (%v):\n%s", op, err, body)
		}
	}
	return fast
}

// gen writes a random document for shape name; bad is the chance, at each
// value, of breaking it (wrong type, constraint violation, unknown member,
// null, duplicate).
type gen struct {
	m   *Model
	r   *rand.Rand
	bad float64
}

func (g *gen) breaks() bool { return g.r.Float64() < g.bad }

func (g *gen) value(name string, sb *strings.Builder, depth int) {
	s := g.m.shapes[name]
	if s == nil || depth > 6 {
		sb.WriteString("null")
		return
	}
	if g.breaks() {
		sb.WriteString([]string{`null`, `1`, `"x"`, `true`, `{}`, `[]`, `1.5`, `"\u0041"`, `-1`, `99999999999`}[g.r.Intn(10)])
		return
	}
	switch s.Type {
	case "structure":
		sb.WriteByte('{')
		names := make([]string, 0, len(s.Members))
		for n := range s.Members {
			names = append(names, n)
		}
		sort.Strings(names)
		first := true
		sep := func() {
			if !first {
				sb.WriteByte(',')
			}
			first = false
		}
		for _, n := range names {
			required := contains(s.Required, n)
			if !required && g.r.Intn(2) == 0 {
				continue
			}
			if required && g.breaks() {
				continue // a missing required member
			}
			sep()
			fmt.Fprintf(sb, "%q:", n)
			g.value(s.Members[n].Shape, sb, depth+1)
			if g.breaks() {
				sep()
				fmt.Fprintf(sb, "%q:", n) // duplicate
				g.value(s.Members[n].Shape, sb, depth+1)
			}
		}
		if g.breaks() {
			sep()
			sb.WriteString(`"Unknown":1`)
		}
		sb.WriteByte('}')
	case "string":
		g.str(s, sb)
	case "blob":
		n := 1 + g.r.Intn(48)
		if s.Max != nil && g.breaks() {
			n = int(*s.Max) + 1
		}
		if g.breaks() {
			sb.WriteString(`"not base64!"`)
			return
		}
		b := make([]byte, n)
		g.r.Read(b)
		j, _ := json.Marshal(b)
		sb.Write(j)
	case "integer", "long":
		lo, hi := int64(-5), int64(100)
		if s.Min != nil {
			lo = int64(*s.Min)
		}
		if s.Max != nil {
			hi = int64(*s.Max)
		}
		if hi-lo > 1000 {
			hi = lo + 1000
		}
		v := lo + g.r.Int63n(hi-lo+1)
		if g.breaks() {
			v = hi + 1
		}
		fmt.Fprint(sb, v)
	case "boolean":
		fmt.Fprint(sb, g.r.Intn(2) == 0)
	case "double", "float", "timestamp":
		fmt.Fprint(sb, g.r.Float64()*1e9)
	case "list":
		n := g.r.Intn(4)
		if s.Max != nil && g.breaks() {
			n = int(*s.Max) + 1
		}
		sb.WriteByte('[')
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			g.value(s.Member.Shape, sb, depth+1)
		}
		sb.WriteByte(']')
	case "map":
		n := g.r.Intn(4)
		sb.WriteByte('{')
		for i := 0; i < n; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			key := fmt.Sprintf("k%d", g.r.Intn(3)) // sometimes a duplicate
			if ks := g.m.shapes[s.Key.Shape]; ks != nil && len(ks.Enum) > 0 {
				key = ks.Enum[g.r.Intn(len(ks.Enum))]
			}
			fmt.Fprintf(sb, "%q:", key)
			g.value(s.Value.Shape, sb, depth+1)
		}
		sb.WriteByte('}')
	default:
		sb.WriteString("null")
	}
}

func (g *gen) str(s *shape, sb *strings.Builder) {
	if len(s.Enum) > 0 {
		v := s.Enum[g.r.Intn(len(s.Enum))]
		if g.breaks() {
			v = "NOT_IN_ENUM"
		}
		fmt.Fprintf(sb, "%q", v)
		return
	}
	// Candidates that satisfy the common KMS patterns (ids, ARNs, aliases,
	// names, tag values) and some that do not.
	cands := []string{"1234abcd-12ab-34cd-56ef-1234567890ab", "alias/test", "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
		"cks-1234567890abcdef0", "name", "https://example.com", "/kms/xks/v1", "a b", "ünïcödé", "x", "\\u00e9t\\u00e9", "a\\\"b", "\\/"}
	v := cands[g.r.Intn(len(cands))]
	if g.breaks() {
		v = strings.Repeat("z", 300+g.r.Intn(3000))
	}
	sb.WriteString(`"` + v + `"`)
}

func TestFastCheckAgreesWithModelWalk(t *testing.T) {
	m := kmsModel(t)
	ops := make([]string, 0, len(m.ops))
	for op := range m.ops {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	r := rand.New(rand.NewSource(1))
	fastTotal := 0
	for _, op := range ops {
		if m.ops[op].Input == "" {
			continue
		}
		for i := 0; i < 300; i++ {
			g := &gen{m: m, r: r, bad: []float64{0, 0.02, 0.1, 0.3}[i%4]}
			var sb strings.Builder
			g.value(m.ops[op].Input, &sb, 0)
			if agree(t, m, op, []byte(sb.String())) {
				fastTotal++
			}
		}
	}
	if fastTotal == 0 {
		t.Fatal("no generated body took the fast path")
	}
	t.Logf("%d generated bodies took the fast path", fastTotal)
}

func TestFastCheckTakesCommonRequests(t *testing.T) {
	m := kmsModel(t)
	for op, body := range map[string]string{
		"Encrypt":         `{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","EncryptionContext":{"purpose":"test","user":"é"}}`,
		"Decrypt":         `{"CiphertextBlob":"AQIDBAUGBwgJCgsMDQ4PEA==","EncryptionContext":{"purpose":"test"},"GrantTokens":["t1"]}`,
		"GenerateDataKey": `{"KeyId":"alias/test","KeySpec":"AES_256","DryRun":false}`,
		"DescribeKey":     ` {"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"} `,
		"ListKeys":        `{"Limit":100,"Marker":null}`,
		"CreateKey":       `{"Description":"d","KeyUsage":"ENCRYPT_DECRYPT","Tags":[{"TagKey":"k","TagValue":"v"}]}`,
	} {
		if !agree(t, m, op, []byte(body)) {
			t.Errorf("%s: %s took the full walk", op, body)
		}
	}
}

func FuzzFastCheck(f *testing.F) {
	m, err := LoadModel([]byte(testModel))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"Name":"abc","Data":"AQID","Limit":3,"Mode":"A","Tags":["x"],"Ctx":{"k":"v"},"On":true}`))
	f.Add([]byte(`{"Name":"abc","Data":"AQID","Name":null}`))
	f.Add([]byte(`{"Name":"a\u0062c","Data":"AQ\/D","Ctx":{"k":null,"k":"v"}}`))
	f.Add([]byte(`{"Name":"abc","Data":"AQID","Limit":1e1,"Tags":[null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		agree(t, m, "Put", b)
	})
}

// BenchmarkDecodeInput is the per-request cost of validating and decoding
// an Encrypt body: the fast check plus the typed decode, against the full
// model walk it replaces on the common path.
func BenchmarkDecodeInput(b *testing.B) {
	m := kmsModel(b)
	body := []byte(`{"KeyId":"1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","EncryptionContext":{"purpose":"test"}}`)
	type encryptIn struct {
		KeyId               string
		Plaintext           []byte
		EncryptionContext   map[string]string
		GrantTokens         []string
		EncryptionAlgorithm string
		DryRun              *bool
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var in encryptIn
			if err := m.DecodeInput("Encrypt", body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("model-walk", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var in encryptIn
			if err := m.checkBody(m.ops["Encrypt"], body); err != nil {
				b.Fatal(err)
			}
			if err := decodeInto(body, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast-check-only", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			sc := scanner{jsonscan.Scanner{B: body}}
			if !sc.fastOK(m.shapes["EncryptRequest"]) {
				b.Fatal("full walk")
			}
		}
	})
}
