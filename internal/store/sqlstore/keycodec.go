package sqlstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// A key record's data column (everything not needed by a query) is written
// in a compact binary form: with a million keys nearly every request reads
// and decodes one record (the caches hold 10,000), and decoding the JSON
// form cost more than the SQLite read (about 15 µs and 19 allocations per
// record, against about 1 µs). Records written as JSON by an earlier
// keyhold are still read (a JSON object starts with '{'); a rewrite (any
// UpdateKey) stores them in the binary form.
//
// Binary form: keyCodecV1, then the fields of keyData in the order of
// encodeKeyData. Strings and byte strings are a uvarint length and the
// bytes; integers are varints; a time is 0 for the zero time or 1, its
// Unix seconds (varint) and nanoseconds (uvarint), read back in UTC; an
// optional struct is 0 (absent) or 1 and its fields; a list is its length
// and its elements. TestKeyCodecEveryField fails when a field of store.Key
// (or of a struct it holds) is not encoded.
const keyCodecV1 = 1

func encodeKeyData(k *store.Key) []byte {
	e := keyEncoder{b: make([]byte, 0, 256+len(k.Policy)+2*len(k.SealedMaterial))}
	e.b = append(e.b, keyCodecV1)
	e.time(k.CreationDate)
	e.str(k.Description)
	e.str(k.KeyUsage)
	e.str(k.KeySpec)
	e.str(k.Origin)
	e.time(k.DeletionDate)
	e.int(int64(k.PendingWindowInDays))
	e.str(k.Policy)
	e.uint(uint64(len(k.Tags)))
	for _, t := range k.Tags {
		e.str(t.Key)
		e.str(t.Value)
	}
	e.str(k.CloudHsmClusterID)
	e.bytes(k.BackingKeyID)
	e.bytes(k.SealedMaterial)
	e.uint(uint64(len(k.Materials)))
	for _, m := range k.Materials {
		e.bytes(m.ID)
		e.bytes(m.Sealed)
		e.time(m.Created)
		e.str(m.RotationType)
		e.str(m.ExpirationModel)
		e.time(m.ValidTo)
		e.str(m.Description)
		e.bytes(m.Digest)
		e.bool(m.Pending)
	}
	e.bool(k.Rotation.Enabled)
	e.int(int64(k.Rotation.PeriodDays))
	e.time(k.Rotation.Next)
	e.time(k.Rotation.OnDemandStart)
	e.int(int64(k.Rotation.OnDemandCount))
	e.bool(k.Import != nil)
	if im := k.Import; im != nil {
		e.bytes(im.TokenID)
		e.str(im.WrappingSpec)
		e.str(im.Algorithm)
		e.bytes(im.SealedKey)
		e.time(im.ValidTo)
	}
	e.str(k.KeyManager)
	e.bool(k.MultiRegion != nil)
	if mr := k.MultiRegion; mr != nil {
		e.str(mr.PrimaryRegion)
		e.uint(uint64(len(mr.ReplicaRegions)))
		for _, r := range mr.ReplicaRegions {
			e.str(r)
		}
	}
	return e.b
}

// decodeKeyData fills the data fields of k from a data column, binary or
// JSON.
func decodeKeyData(data []byte, k *store.Key) error {
	if len(data) == 0 || data[0] != keyCodecV1 {
		return decodeKeyJSON(data, k)
	}
	d := keyDecoder{b: data[1:]}
	k.CreationDate = d.time()
	k.Description = d.str()
	k.KeyUsage = d.str()
	k.KeySpec = d.str()
	k.Origin = d.str()
	k.DeletionDate = d.time()
	k.PendingWindowInDays = d.intv()
	k.Policy = d.str()
	if n := d.count(); n > 0 {
		k.Tags = make([]store.Tag, n)
		for i := range k.Tags {
			k.Tags[i] = store.Tag{Key: d.str(), Value: d.str()}
		}
	}
	k.CloudHsmClusterID = d.str()
	k.BackingKeyID = d.bytes()
	k.SealedMaterial = d.bytes()
	if n := d.count(); n > 0 {
		k.Materials = make([]store.KeyMaterial, n)
		for i := range k.Materials {
			m := &k.Materials[i]
			m.ID = d.bytes()
			m.Sealed = d.bytes()
			m.Created = d.time()
			m.RotationType = d.str()
			m.ExpirationModel = d.str()
			m.ValidTo = d.time()
			m.Description = d.str()
			m.Digest = d.bytes()
			m.Pending = d.bool()
		}
	}
	k.Rotation.Enabled = d.bool()
	k.Rotation.PeriodDays = d.intv()
	k.Rotation.Next = d.time()
	k.Rotation.OnDemandStart = d.time()
	k.Rotation.OnDemandCount = d.intv()
	if d.bool() {
		k.Import = &store.ImportParameters{TokenID: d.bytes(), WrappingSpec: d.str(), Algorithm: d.str(), SealedKey: d.bytes(), ValidTo: d.time()}
	}
	k.KeyManager = d.str()
	if d.bool() {
		mr := &store.MultiRegion{PrimaryRegion: d.str()}
		if n := d.count(); n > 0 {
			mr.ReplicaRegions = make([]string, n)
			for i := range mr.ReplicaRegions {
				mr.ReplicaRegions[i] = d.str()
			}
		}
		k.MultiRegion = mr
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	return d.err
}

func decodeKeyJSON(data []byte, k *store.Key) error {
	var kd keyData
	if err := json.Unmarshal(data, &kd); err != nil {
		return err
	}
	k.CreationDate, k.Description, k.KeyUsage, k.KeySpec, k.Origin = kd.CreationDate, kd.Description, kd.KeyUsage, kd.KeySpec, kd.Origin
	k.DeletionDate, k.PendingWindowInDays, k.Policy, k.Tags = kd.DeletionDate, kd.PendingWindowInDays, kd.Policy, kd.Tags
	k.CloudHsmClusterID, k.BackingKeyID, k.SealedMaterial = kd.CloudHsmClusterID, kd.BackingKeyID, kd.SealedMaterial
	k.Materials, k.Rotation, k.Import, k.KeyManager = kd.Materials, kd.Rotation, kd.Import, kd.KeyManager
	k.MultiRegion = kd.MultiRegion
	return nil
}

var (
	errTruncated = errors.New("key record: truncated")
	errTrailing  = errors.New("key record: trailing bytes")
)

type keyEncoder struct{ b []byte }

func (e *keyEncoder) uint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *keyEncoder) int(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *keyEncoder) str(s string) {
	e.uint(uint64(len(s)))
	e.b = append(e.b, s...)
}
func (e *keyEncoder) bytes(p []byte) {
	e.uint(uint64(len(p)))
	e.b = append(e.b, p...)
}
func (e *keyEncoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *keyEncoder) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.int(t.Unix())
	e.uint(uint64(t.Nanosecond()))
}

// keyDecoder reads what keyEncoder wrote; after the first error every read
// returns a zero value and err stays set.
type keyDecoder struct {
	b   []byte
	err error
}

func (d *keyDecoder) fail() { d.err, d.b = errTruncated, nil }

func (d *keyDecoder) uint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *keyDecoder) int() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *keyDecoder) intv() int {
	v := d.int()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail()
		return 0
	}
	return int(v)
}

// count reads a list length; each element takes at least a byte, so a
// length beyond what is left is a corrupt record, not an allocation.
func (d *keyDecoder) count() int {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *keyDecoder) raw() []byte {
	n := d.uint()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *keyDecoder) str() string { return string(d.raw()) }

// bytes copies: the driver's buffer is not the caller's to keep.
func (d *keyDecoder) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *keyDecoder) bool() bool {
	if len(d.b) == 0 {
		d.fail()
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.err, d.b = errors.New("key record: bad boolean"), nil
		return false
	}
	return v == 1
}

func (d *keyDecoder) time() time.Time {
	if !d.bool() {
		return time.Time{}
	}
	s, ns := d.int(), d.uint()
	if ns >= 1e9 {
		d.fail()
		return time.Time{}
	}
	return time.Unix(s, int64(ns)).UTC()
}
