package awsjson

import (
	"context"
	"strings"
	"testing"
)

const testModel = `{
 "operations": {"Put": {"input": "PutRequest", "errors": []}},
 "shapes": {
  "PutRequest": {"type": "structure", "required": ["Name", "Data"], "members": {
    "Name": {"shape": "NameType"}, "Data": {"shape": "DataType"}, "Limit": {"shape": "LimitType"},
    "Mode": {"shape": "ModeType"}, "Tags": {"shape": "TagList"}, "Ctx": {"shape": "CtxType"}, "On": {"shape": "Bool"}}},
  "NameType": {"type": "string", "min": 1, "max": 8, "pattern": "^[a-z]+$"},
  "DataType": {"type": "blob", "min": 1, "max": 4, "sensitive": true},
  "LimitType": {"type": "integer", "min": 1, "max": 10},
  "ModeType": {"type": "string", "enum": ["A", "B"]},
  "TagList": {"type": "list", "member": {"shape": "NameType"}, "max": 2},
  "CtxType": {"type": "map", "key": {"shape": "NameType"}, "value": {"shape": "NameType"}},
  "Bool": {"type": "boolean"}
 }}`

type putIn struct {
	Name  string
	Data  []byte
	Limit int
	Mode  string
	Tags  []string
	Ctx   map[string]string
	On    bool
}

func TestDecodeInput(t *testing.T) {
	m, err := LoadModel([]byte(testModel))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, body, typ, msg string
	}{
		{"ok", `{"Name":"abc","Data":"AQID","Limit":3,"Mode":"A","Tags":["x"],"Ctx":{"k":"v"},"On":true}`, "", ""},
		{"empty body", ``, ValidationException, "2 validation errors detected"},
		{"missing required", `{"Name":"abc"}`, ValidationException, "Value null at 'data' failed to satisfy constraint: Member must not be null"},
		{"too long", `{"Name":"abcdefghij","Data":"AQID"}`, ValidationException, "Member must have length less than or equal to 8"},
		{"pattern", `{"Name":"ABC","Data":"AQID"}`, ValidationException, "regular expression pattern"},
		{"sensitive value hidden", `{"Name":"abc","Data":"AQIDBAU="}`, ValidationException, "Value at 'data' failed"},
		{"range", `{"Name":"abc","Data":"AQID","Limit":11}`, ValidationException, "less than or equal to 10"},
		{"enum", `{"Name":"abc","Data":"AQID","Mode":"C"}`, ValidationException, "enum value set: [A, B]"},
		{"list length", `{"Name":"abc","Data":"AQID","Tags":["a","b","c"]}`, ValidationException, "length less than or equal to 2"},
		{"map value", `{"Name":"abc","Data":"AQID","Ctx":{"k":"V"}}`, ValidationException, "ctx.value"},
		{"wrong type", `{"Name":5,"Data":"AQID"}`, SerializationException, "NUMBER_VALUE"},
		{"wrong bool", `{"Name":"abc","Data":"AQID","On":"yes"}`, SerializationException, "STRING_VALUE"},
		{"bad base64", `{"Name":"abc","Data":"@@@"}`, SerializationException, "base64"},
		{"unknown member", `{"Name":"abc","Data":"AQID","Extra":1}`, SerializationException, "Unrecognized field \"Extra\""},
		{"malformed", `{"Name":`, SerializationException, "Malformed JSON"},
		{"trailing", `{"Name":"abc","Data":"AQID"} {}`, SerializationException, "Unexpected content"},
		{"integer overflow", `{"Name":"abc","Data":"AQID","Limit":99999999999}`, SerializationException, "not a valid integer"},
		{"null is absent", `{"Name":"abc","Data":"AQID","Limit":null}`, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var in putIn
			err := m.DecodeInput("Put", []byte(tc.body), &in)
			if tc.typ == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || e.Type != tc.typ || e.Status != 400 || !strings.Contains(e.Message, tc.msg) {
				t.Fatalf("got %v, want %s containing %q", err, tc.typ, tc.msg)
			}
		})
	}
	var in putIn
	if err := m.DecodeInput("Put", []byte(`{"Name":"abc","Data":"AQID","Ctx":{"k":"v"}}`), &in); err != nil || string(in.Data) != "\x01\x02\x03" || in.Ctx["k"] != "v" {
		t.Fatalf("decoded %+v, %v", in, err)
	}
	if err := m.DecodeInput("Nope", nil, nil); err == nil || err.(*Error).Type != UnknownOperation {
		t.Fatalf("unknown operation: %v", err)
	}
}

func TestServiceTableRejectsIncompleteOperations(t *testing.T) {
	for name, op := range map[string]Operation{
		"no action":  {Name: "X", Handle: func(ctx context.Context, c *Call) (any, error) { return nil, nil }},
		"no handler": {Name: "X", Action: "kms:X"},
		"no name":    {Action: "kms:X", Handle: func(ctx context.Context, c *Call) (any, error) { return nil, nil }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: NewService accepted it", name)
				}
			}()
			NewService("P", "s", nil, op)
		}()
	}
}

func FuzzDecodeInput(f *testing.F) {
	m, err := LoadModel([]byte(testModel))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"Name":"abc","Data":"AQID"}`))
	f.Add([]byte(`{"Ctx":{"a":[1,{}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var in putIn
		err := m.DecodeInput("Put", b, &in)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("non-wire error %T", err)
			}
		}
	})
}
