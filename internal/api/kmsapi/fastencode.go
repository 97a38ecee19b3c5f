package kmsapi

import (
	"encoding/base64"

	"github.com/keyhold/keyhold/internal/jsonquote"
)

// The outputs of the crypto operations encode themselves
// (awsjson.JSONAppender), byte for byte as json.Marshal would
// (TestAppendJSONMatchesMarshal).

func (o encryptOut) AppendJSON(b []byte) []byte {
	b = appendBlob(append(b, `{"CiphertextBlob":`...), o.CiphertextBlob)
	b = jsonquote.AppendString(append(b, `,"KeyId":`...), o.KeyId)
	b = jsonquote.AppendString(append(b, `,"EncryptionAlgorithm":`...), o.EncryptionAlgorithm)
	return append(b, '}')
}

func (o decryptOut) AppendJSON(b []byte) []byte {
	b = jsonquote.AppendString(append(b, `{"KeyId":`...), o.KeyId)
	b = appendBlob(append(b, `,"Plaintext":`...), o.Plaintext)
	b = jsonquote.AppendString(append(b, `,"EncryptionAlgorithm":`...), o.EncryptionAlgorithm)
	if o.KeyMaterialId != nil {
		b = jsonquote.AppendString(append(b, `,"KeyMaterialId":`...), *o.KeyMaterialId)
	}
	return append(b, '}')
}

func (o generateDataKeyOut) AppendJSON(b []byte) []byte {
	b = appendBlob(append(b, `{"CiphertextBlob":`...), o.CiphertextBlob)
	if len(o.Plaintext) > 0 { // omitempty
		b = appendBlob(append(b, `,"Plaintext":`...), o.Plaintext)
	}
	b = jsonquote.AppendString(append(b, `,"KeyId":`...), o.KeyId)
	if o.KeyMaterialId != nil {
		b = jsonquote.AppendString(append(b, `,"KeyMaterialId":`...), *o.KeyMaterialId)
	}
	return append(b, '}')
}

// appendBlob is encoding/json's []byte: null for nil, else standard base64
// (whose characters need no escaping) in quotes.
func appendBlob(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}
