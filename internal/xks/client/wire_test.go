package client

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/keyhold/keyhold/internal/xks"
)

// The request bodies are encoding/json's, byte for byte.
func TestAppendRequestsMatchEncodingJSON(t *testing.T) {
	mds := []*xks.RequestMetadata{
		nil,
		{KMSOperation: "Encrypt", KMSRequestID: "r"},
		{AWSPrincipalARN: "arn:aws:iam::111122223333:role/app", KMSKeyARN: "arn:aws:kms:us-east-1:111122223333:key/0b1c",
			KMSOperation: "GenerateDataKey", KMSRequestID: "c8c9a0e4-6f3e", KMSViaService: "ebs"},
		{AWSPrincipalARN: "a\"b\\c<d>e&f\u2028g\x01h\xffi é", AWSSourceVPC: "vpc-1", AWSSourceVPCE: "vpce-1",
			KMSOperation: "\t\n", KMSRequestID: ""},
	}
	blobs := [][]byte{nil, {}, {0}, []byte("thirty-two bytes of plaintext!!!"), make([]byte, 4300)}
	for _, md := range mds {
		for _, pt := range blobs {
			for _, aad := range blobs[:3] {
				for _, cdiv := range []string{"", xks.CDIVAlgorithm} {
					e := xks.EncryptRequest{RequestMetadata: md, Plaintext: pt, EncryptionAlgorithm: xks.EncryptionAlgorithm,
						AdditionalAuthenticatedData: aad, CiphertextDataIntegrityValueAlgorithm: cdiv}
					want, err := json.Marshal(e)
					if err != nil {
						t.Fatal(err)
					}
					if got := appendEncryptRequest(nil, &e); string(got) != string(want) {
						t.Errorf("encrypt request:\n got %s\nwant %s", got, want)
					}
					d := xks.DecryptRequest{RequestMetadata: md, Ciphertext: pt, CiphertextMetadata: aad, EncryptionAlgorithm: cdiv,
						AdditionalAuthenticatedData: aad, InitializationVector: pt, AuthenticationTag: aad}
					want, err = json.Marshal(d)
					if err != nil {
						t.Fatal(err)
					}
					if got := appendDecryptRequest([]byte("x"), &d); string(got[1:]) != string(want) {
						t.Errorf("decrypt request:\n got %s\nwant %s", got[1:], want)
					}
				}
			}
		}
	}
}

// Answers decode as encoding/json decodes them, in the fast shape and in
// every other.
func TestDecodeResponsesMatchEncodingJSON(t *testing.T) {
	for _, s := range responseCorpus {
		checkDecode(t, []byte(s))
	}
}

var responseCorpus = []string{
	`{"authenticationTag":"AAECAwQFBgcICQoLDA0ODw==","ciphertext":"YWJj","ciphertextDataIntegrityValue":"x+/=","ciphertextMetadata":"dj03","initializationVector":"AAAAAAAAAAAAAAAA"}`,
	` { "ciphertext" : "YWJj" ,"initializationVector":"", "other":"ignored" } ` + "\n",
	`{"plaintext":""}`,
	`{"plaintext":"YWJj","plaintext":"ZGVm"}`,
	`{"Plaintext":"YWJj"}`,
	`{"PLAINTEXT":"YWJj","plaintext":"ZGVm"}`,
	`{"plaintext":null}`,
	`{"plaintext":"YW Jj"}`,
	`{"plaintext":"YWJj\n"}`,
	`{"plaintext":"YWJj\r\n"}`,
	`{"plaintext":"!!"}`,
	`{"plaintext":"YWJj"} x`,
	`{"plaintext":"YWJj",}`,
	`{"plaintext":"YWJj" "x":"y"}`,
	`{"plaintext":1}`,
	`{"ciphertextDataIntegrityValue":"é"}`,
	`{"ciphertextDataIntegrityValue":"a\"b"}`,
	`{"ciphertextDataIntegrityValue":"\u0041"}`,
	`{"ciphertextDataIntegrityValue":"\xff"}`,
	`{"x":{"plaintext":"YWJj"},"plaintext":"ZGVm"}`,
	`{}`,
	`{ }`,
	`[]`,
	``,
	`{`,
	`{"a`,
	`{"a":`,
	`{"a":"b"`,
	`null`,
}

func checkDecode(t *testing.T, data []byte) {
	t.Helper()
	var e, we xks.EncryptResponse
	err, werr := decodeEncryptResponse(data, &e), json.Unmarshal(data, &we)
	if (err == nil) != (werr == nil) || !reflect.DeepEqual(e, we) {
		t.Errorf("encrypt answer %q: got %+v, %v; encoding/json %+v, %v", data, e, err, we, werr)
	}
	var d, wd xks.DecryptResponse
	err, werr = decodeDecryptResponse(data, &d), json.Unmarshal(data, &wd)
	if (err == nil) != (werr == nil) || !reflect.DeepEqual(d, wd) {
		t.Errorf("decrypt answer %q: got %+v, %v; encoding/json %+v, %v", data, d, err, wd, werr)
	}
}

func FuzzDecodeResponses(f *testing.F) {
	for _, s := range responseCorpus {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkDecode(t, data) })
}
