package integration

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// TestImportedKeyRotation walks AWS's on-demand rotation of a symmetric key
// with imported material: NEW_KEY_MATERIAL adds material PENDING_ROTATION,
// RotateKeyOnDemand makes it CURRENT, every material keeps decrypting what
// it encrypted, ListKeyRotations shows materials, their import state and
// state; deleting a NON_CURRENT material makes the key PendingImport until
// that same material is imported again; pending material can be deleted
// outright.
func TestImportedKeyRotation(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := e.KMS
	k, err := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal})
	if err != nil {
		t.Fatal(err)
	}
	id := k.KeyMetadata.KeyId
	newMaterial := func() []byte { m := make([]byte, 32); rand.Read(m); return m }
	imp := func(material []byte, in kms.ImportKeyMaterialInput) (*kms.ImportKeyMaterialOutput, error) {
		token, wrapped := wrapForImport(t, c, id, material)
		in.KeyId, in.ImportToken, in.EncryptedKeyMaterial = id, token, wrapped
		return c.ImportKeyMaterial(ctx, &in)
	}
	rotations := func(all bool) []types.RotationsListEntry {
		in := &kms.ListKeyRotationsInput{KeyId: id}
		if all {
			in.IncludeKeyMaterial = types.IncludeKeyMaterialAllKeyMaterial
		}
		out, err := c.ListKeyRotations(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return out.Rotations
	}
	state := func() types.KeyState {
		d, err := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
		if err != nil {
			t.Fatal(err)
		}
		return d.KeyMetadata.KeyState
	}

	// Nothing to rotate yet.
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id})
	wantCode(t, err, "KMSInvalidStateException")

	m1 := newMaterial()
	first, err := imp(m1, kms.ImportKeyMaterialInput{KeyMaterialDescription: aws.String("first")}) // defaults to NEW_KEY_MATERIAL
	if err != nil {
		t.Fatal(err)
	}
	id1 := aws.ToString(first.KeyMaterialId)
	enc1, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("under m1")})
	if err != nil {
		t.Fatal(err)
	}
	// Enabled, no rotation yet: nothing pending to rotate in.
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id})
	wantCode(t, err, "KMSInvalidStateException")
	// Different material without NEW_KEY_MATERIAL is refused (the default
	// after the first import is EXISTING_KEY_MATERIAL).
	_, err = imp(newMaterial(), kms.ImportKeyMaterialInput{})
	wantErr[*types.IncorrectKeyMaterialException](t, err)
	_, err = imp(newMaterial(), kms.ImportKeyMaterialInput{ImportType: types.ImportTypeNewKeyMaterial, KeyMaterialId: aws.String(id1)})
	wantCode(t, err, "ValidationException")
	_, err = imp(m1, kms.ImportKeyMaterialInput{ImportType: types.ImportTypeNewKeyMaterial})
	wantCode(t, err, "ValidationException")

	m2 := newMaterial()
	second, err := imp(m2, kms.ImportKeyMaterialInput{ImportType: types.ImportTypeNewKeyMaterial, KeyMaterialDescription: aws.String("second")})
	if err != nil {
		t.Fatal(err)
	}
	id2 := aws.ToString(second.KeyMaterialId)
	if id2 == id1 || len(id2) != 64 {
		t.Fatalf("material ids %s, %s", id1, id2)
	}
	// A second pending material is refused until the first is rotated in.
	_, err = imp(newMaterial(), kms.ImportKeyMaterialInput{ImportType: types.ImportTypeNewKeyMaterial})
	wantCode(t, err, "KMSInvalidStateException")
	if rs := rotations(false); len(rs) != 0 {
		t.Fatalf("ROTATIONS_ONLY before any rotation: %+v", rs)
	}
	all := rotations(true)
	if len(all) != 2 || aws.ToString(all[0].KeyMaterialId) != id1 || all[0].KeyMaterialState != types.KeyMaterialStateCurrent ||
		aws.ToString(all[1].KeyMaterialId) != id2 || all[1].KeyMaterialState != types.KeyMaterialStatePendingRotation ||
		all[1].ImportState != types.ImportStateImported || aws.ToString(all[1].KeyMaterialDescription) != "second" || all[1].RotationDate != nil {
		t.Fatalf("ALL_KEY_MATERIAL with one pending: %+v", all)
	}
	// Still encrypting under the first material.
	if enc, _ := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("x")}); enc == nil {
		t.Fatal("Encrypt failed")
	} else if d, _ := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob}); aws.ToString(d.KeyMaterialId) != id1 {
		t.Fatalf("encrypted under %s before the rotation, want %s", aws.ToString(d.KeyMaterialId), id1)
	}

	if _, err := c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: id}); err != nil {
		t.Fatalf("RotateKeyOnDemand: %v", err)
	}
	d, _ := c.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: id})
	if aws.ToString(d.KeyMetadata.CurrentKeyMaterialId) != id2 {
		t.Fatalf("CurrentKeyMaterialId %s after rotation, want %s", aws.ToString(d.KeyMetadata.CurrentKeyMaterialId), id2)
	}
	enc2, err := c.Encrypt(ctx, &kms.EncryptInput{KeyId: id, Plaintext: []byte("under m2")})
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range []struct {
		blob     []byte
		text, id string
	}{{enc1.CiphertextBlob, "under m1", id1}, {enc2.CiphertextBlob, "under m2", id2}} {
		out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: ct.blob})
		if err != nil || string(out.Plaintext) != ct.text || aws.ToString(out.KeyMaterialId) != ct.id {
			t.Fatalf("Decrypt %q: %+v, %v", ct.text, out, err)
		}
	}
	rs := rotations(false)
	if len(rs) != 1 || aws.ToString(rs[0].KeyMaterialId) != id2 || rs[0].RotationType != types.RotationTypeOnDemand ||
		rs[0].RotationDate == nil || time.Since(*rs[0].RotationDate) > time.Minute || rs[0].KeyMaterialState != types.KeyMaterialStateCurrent {
		t.Fatalf("ROTATIONS_ONLY after the rotation: %+v", rs)
	}
	if all := rotations(true); len(all) != 2 || all[0].KeyMaterialState != types.KeyMaterialStateNonCurrent {
		t.Fatalf("ALL_KEY_MATERIAL after the rotation: %+v", all)
	}

	// Deleting the NON_CURRENT material: the key needs all its materials.
	del, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id, KeyMaterialId: aws.String(id1)})
	if err != nil || aws.ToString(del.KeyMaterialId) != id1 {
		t.Fatalf("DeleteImportedKeyMaterial(m1): %+v, %v", del, err)
	}
	if s := state(); s != types.KeyStatePendingImport {
		t.Fatalf("state after deleting non-current material: %s", s)
	}
	if all := rotations(true); all[0].ImportState != types.ImportStatePendingImport || all[1].ImportState != types.ImportStateImported {
		t.Fatalf("import states: %+v", all)
	}
	_, err = c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc2.CiphertextBlob})
	wantCode(t, err, "KMSInvalidStateException")
	// Re-import m1 by id (EXISTING_KEY_MATERIAL), keeping its description.
	if _, err := imp(m1, kms.ImportKeyMaterialInput{ImportType: types.ImportTypeExistingKeyMaterial, KeyMaterialId: aws.String(id1)}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStateEnabled {
		t.Fatalf("state after re-import: %s", s)
	}
	if all := rotations(true); aws.ToString(all[0].KeyMaterialDescription) != "first" {
		t.Fatalf("description not kept on re-import: %+v", all[0])
	}
	if out, err := c.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc1.CiphertextBlob}); err != nil || string(out.Plaintext) != "under m1" {
		t.Fatalf("old ciphertext after re-import: %v", err)
	}
	// The wrong material under an id is IncorrectKeyMaterial.
	_, err = imp(m2, kms.ImportKeyMaterialInput{ImportType: types.ImportTypeExistingKeyMaterial, KeyMaterialId: aws.String(id1)})
	wantErr[*types.IncorrectKeyMaterialException](t, err)

	// Pending material can be deleted outright and replaced.
	m3 := newMaterial()
	third, err := imp(m3, kms.ImportKeyMaterialInput{ImportType: types.ImportTypeNewKeyMaterial})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id, KeyMaterialId: third.KeyMaterialId}); err != nil {
		t.Fatal(err)
	}
	if s := state(); s != types.KeyStateEnabled {
		t.Fatalf("deleting pending material changed the key's state to %s", s)
	}
	if all := rotations(true); len(all) != 2 {
		t.Fatalf("deleted pending material still listed: %+v", all)
	}
	// DeleteImportedKeyMaterial without an id deletes the current material.
	del, err = c.DeleteImportedKeyMaterial(ctx, &kms.DeleteImportedKeyMaterialInput{KeyId: id})
	if err != nil || aws.ToString(del.KeyMaterialId) != id2 {
		t.Fatalf("DeleteImportedKeyMaterial(current): %+v, %v", del, err)
	}
	if all := rotations(true); all[0].ImportState != types.ImportStateImported || all[1].ImportState != types.ImportStatePendingImport {
		t.Fatalf("after deleting the current material: %+v", all)
	}

	// Asymmetric and HMAC keys take no ImportType (AWS: symmetric only).
	hk, _ := c.CreateKey(ctx, &kms.CreateKeyInput{Origin: types.OriginTypeExternal, KeySpec: types.KeySpecHmac256, KeyUsage: types.KeyUsageTypeGenerateVerifyMac})
	token, wrapped := wrapForImport(t, c, hk.KeyMetadata.KeyId, newMaterial())
	_, err = c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: hk.KeyMetadata.KeyId, ImportToken: token, EncryptedKeyMaterial: wrapped, ImportType: types.ImportTypeNewKeyMaterial})
	wantCode(t, err, "ValidationException")
	if _, err := c.ImportKeyMaterial(ctx, &kms.ImportKeyMaterialInput{KeyId: hk.KeyMetadata.KeyId, ImportToken: token, EncryptedKeyMaterial: wrapped}); err != nil {
		t.Fatal(err)
	}
	_, err = c.RotateKeyOnDemand(ctx, &kms.RotateKeyOnDemandInput{KeyId: hk.KeyMetadata.KeyId})
	wantErr[*types.UnsupportedOperationException](t, err)
}
