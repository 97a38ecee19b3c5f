package kmsapi

import "github.com/keyhold/keyhold/internal/awsjson"

// The inputs of the operations that carry most of the traffic decode
// themselves (awsjson.MemberDecoder) once the model's fast check has
// accepted the body; any other member (Recipient, DryRunModifiers) sends
// the request through encoding/json as before. TestFastDecodeMatchesJSON
// holds each to json.Unmarshal's result.

func (in *encryptIn) DecodeMember(name string, v *awsjson.Value) bool {
	switch name {
	case "KeyId":
		return v.String(&in.KeyId)
	case "Plaintext":
		return v.Blob(&in.Plaintext)
	case "EncryptionContext":
		return v.StringMap(&in.EncryptionContext)
	case "GrantTokens":
		return v.StringList(&in.GrantTokens)
	case "EncryptionAlgorithm":
		return v.String(&in.EncryptionAlgorithm)
	case "DryRun":
		return v.Bool(&in.DryRun)
	}
	return false
}

func (in *decryptIn) DecodeMember(name string, v *awsjson.Value) bool {
	switch name {
	case "CiphertextBlob":
		return v.Blob(&in.CiphertextBlob)
	case "EncryptionContext":
		return v.StringMap(&in.EncryptionContext)
	case "GrantTokens":
		return v.StringList(&in.GrantTokens)
	case "KeyId":
		return v.String(&in.KeyId)
	case "EncryptionAlgorithm":
		return v.String(&in.EncryptionAlgorithm)
	case "DryRun":
		return v.Bool(&in.DryRun)
	}
	return false
}

func (in *generateDataKeyIn) DecodeMember(name string, v *awsjson.Value) bool {
	switch name {
	case "KeyId":
		return v.String(&in.KeyId)
	case "EncryptionContext":
		return v.StringMap(&in.EncryptionContext)
	case "NumberOfBytes":
		return v.Int(&in.NumberOfBytes)
	case "KeySpec":
		return v.String(&in.KeySpec)
	case "GrantTokens":
		return v.StringList(&in.GrantTokens)
	case "DryRun":
		return v.Bool(&in.DryRun)
	}
	return false
}

func (in *generateDataKeyWithoutPlaintextIn) DecodeMember(name string, v *awsjson.Value) bool {
	switch name {
	case "KeyId":
		return v.String(&in.KeyId)
	case "EncryptionContext":
		return v.StringMap(&in.EncryptionContext)
	case "KeySpec":
		return v.String(&in.KeySpec)
	case "NumberOfBytes":
		return v.Int(&in.NumberOfBytes)
	case "GrantTokens":
		return v.StringList(&in.GrantTokens)
	case "DryRun":
		return v.Bool(&in.DryRun)
	}
	return false
}

func (in *keyIDIn) DecodeMember(name string, v *awsjson.Value) bool {
	switch name {
	case "KeyId":
		return v.String(&in.KeyId)
	case "GrantTokens":
		return v.StringList(&in.GrantTokens)
	}
	return false
}
