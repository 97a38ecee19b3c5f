// Package blob is keyhold's versioned ciphertext format, shared by every key
// store:
//
//	version(1) | kind(1) | key id(16) | backing key id(16) | payload
//
// The kind byte's high bit marks a multi-Region key (its id is mrk- and
// the 16 bytes in hex, not a UUID).
//
// The 34-byte header is authenticated (it is part of the AAD of every
// store's encryption), the payload is store-specific. Parsing never panics on
// client input and never says why a blob was rejected beyond "invalid".
package blob

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
)

// Version1 is the only format so far.
const Version1 = 1

// HeaderLen is the length of the authenticated header.
const HeaderLen = 34

// Kind says which key store produced the payload.
type Kind byte

const (
	KindSoft     Kind = 1 // keyhold-held material (Origin AWS_KMS)
	KindCloudHSM Kind = 2 // an HSM cluster key (Origin AWS_CLOUDHSM)
	KindXKS      Kind = 3 // double encryption (Origin EXTERNAL_KEY_STORE)
)

// multiRegionFlag is set in the kind byte for a multi-Region key's id.
const multiRegionFlag = 0x80

// MultiRegionPrefix starts a multi-Region key's id: "mrk-" and 32
// lowercase hex digits, as AWS formats them.
const MultiRegionPrefix = "mrk-"

// ErrInvalid means the bytes are not a ciphertext keyhold produced.
var ErrInvalid = errors.New("blob: invalid ciphertext")

// Header identifies the key and material that made a ciphertext.
type Header struct {
	Kind         Kind
	KeyID        [16]byte
	BackingKeyID [16]byte
	// MultiRegion says KeyID is a multi-Region key's (mrk-) id.
	MultiRegion bool
}

// KeyIDString renders the key id as a KMS key id (UUID or mrk- form).
func (h Header) KeyIDString() string { return FormatKeyID(h.KeyID, h.MultiRegion) }

// Bytes is the header's wire form (also the AAD prefix).
func (h Header) Bytes() []byte {
	b := make([]byte, HeaderLen)
	b[0] = Version1
	b[1] = byte(h.Kind)
	if h.MultiRegion {
		b[1] |= multiRegionFlag
	}
	copy(b[2:18], h.KeyID[:])
	copy(b[18:34], h.BackingKeyID[:])
	return b
}

// Encode joins header and payload.
func Encode(h Header, payload []byte) []byte {
	return append(h.Bytes(), payload...)
}

// Decode splits a blob. The payload aliases b.
func Decode(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < HeaderLen+1 || b[0] != Version1 {
		return h, nil, ErrInvalid
	}
	h.MultiRegion = b[1]&multiRegionFlag != 0
	h.Kind = Kind(b[1] &^ multiRegionFlag)
	switch h.Kind {
	case KindSoft, KindCloudHSM, KindXKS:
	default:
		return Header{}, nil, ErrInvalid
	}
	copy(h.KeyID[:], b[2:18])
	copy(h.BackingKeyID[:], b[18:34])
	return h, b[HeaderLen:], nil
}

// AAD binds a header and an encryption context: header || canonical(ctx).
// The canonical form sorts keys and length-prefixes every key and value, so
// no two different contexts encode alike.
func AAD(header []byte, ec map[string]string) []byte {
	var kbuf [8]string // most encryption contexts are a few pairs
	keys := kbuf[:0]
	n := len(header) + 4
	for k, v := range ec {
		keys = append(keys, k)
		n += 8 + len(k) + len(v)
	}
	slices.Sort(keys)
	out := make([]byte, 0, n)
	out = append(out, header...)
	out = binary.BigEndian.AppendUint32(out, uint32(len(keys)))
	for _, k := range keys {
		out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
		out = append(out, k...)
		out = binary.BigEndian.AppendUint32(out, uint32(len(ec[k])))
		out = append(out, ec[k]...)
	}
	return out
}

// Fields packs byte fields with uvarint lengths (for store payloads).
func Fields(fs ...[]byte) []byte {
	n := 0
	for _, f := range fs {
		n += len(f) + binary.MaxVarintLen32
	}
	out := make([]byte, 0, n)
	for _, f := range fs {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	return out
}

// SplitFields unpacks exactly n fields packed by Fields.
func SplitFields(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, ErrInvalid
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, ErrInvalid
	}
	return out, nil
}

// ParseUUID parses a canonical lowercase or uppercase UUID string.
func ParseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	// Each group decoded in place: no copy without the dashes.
	for _, g := range [...]struct{ from, to, at int }{{0, 8, 0}, {9, 13, 4}, {14, 18, 6}, {19, 23, 8}, {24, 36, 10}} {
		if _, err := hex.Decode(u[g.at:], []byte(s[g.from:g.to])); err != nil {
			return [16]byte{}, false
		}
	}
	return u, true
}

// FormatUUID renders 16 bytes as 8-4-4-4-12 lowercase hex.
func FormatUUID(u [16]byte) string {
	var b [36]byte
	return string(AppendUUID(b[:0], u))
}

// AppendUUID appends u as FormatUUID renders it.
func AppendUUID(b []byte, u [16]byte) []byte {
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return append(b, s[:]...)
}

// ParseKeyID parses a KMS key id: a UUID, or (multiRegion) "mrk-" and 32
// hex digits. Either case is accepted, as AWS does.
func ParseKeyID(s string) (id [16]byte, multiRegion, ok bool) {
	if len(s) == len(MultiRegionPrefix)+32 && strings.EqualFold(s[:len(MultiRegionPrefix)], MultiRegionPrefix) {
		if _, err := hex.Decode(id[:], []byte(s[len(MultiRegionPrefix):])); err != nil {
			return [16]byte{}, false, false
		}
		return id, true, true
	}
	id, ok = ParseUUID(s)
	return id, false, ok
}

// FormatKeyID renders a key id: a UUID, or mrk- and 32 lowercase hex
// digits for a multi-Region key.
func FormatKeyID(id [16]byte, multiRegion bool) string {
	if multiRegion {
		return MultiRegionPrefix + hex.EncodeToString(id[:])
	}
	return FormatUUID(id)
}
