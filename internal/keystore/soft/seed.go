package soft

import (
	"crypto/sha256"
	"fmt"
)

// SealGivenMaterial seals 256-bit material chosen by the caller (a seed
// file) for keyID. The backing key id is derived from the key id and the
// material, so that the same seed on two data directories gives keys whose
// ciphertexts each can decrypt. It never returns or logs the material.
func (b *Backend) SealGivenMaterial(keyID string, material []byte) (sealed, backingKeyID []byte, err error) {
	if len(material) != 32 {
		return nil, nil, fmt.Errorf("soft.SealGivenMaterial: key material must be 32 bytes, not %d", len(material))
	}
	h := sha256.New()
	h.Write([]byte("keyhold seed material id\x00" + keyID + "\x00"))
	h.Write(material)
	backingKeyID = h.Sum(nil)[:16]
	sealed, err = b.root.Seal(material, materialAAD(keyID, backingKeyID))
	return sealed, backingKeyID, err
}
