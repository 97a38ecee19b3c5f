package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/keyhold/keyhold/internal/config"
	"github.com/keyhold/keyhold/internal/kms"
	"github.com/keyhold/keyhold/internal/store"
)

// SeedFile is what --seed FILE holds (JSON): keys with fixed ids and,
// optionally, fixed material, and aliases. Field names follow the KMS API.
type SeedFile struct {
	Keys    []SeedKey   `json:"Keys"`
	Aliases []SeedAlias `json:"Aliases"`
}

// SeedKey is one key of a seed file.
type SeedKey struct {
	KeyID       string `json:"KeyId"`
	Description string `json:"Description"`
	KeySpec     string `json:"KeySpec"`
	KeyUsage    string `json:"KeyUsage"`
	Origin      string `json:"Origin"`
	// KeyMaterial is the key material in base64: the raw bytes of a
	// SYMMETRIC_DEFAULT (32 bytes) or HMAC key, the PKCS#8 DER private key
	// of an asymmetric key (or that key as a PEM "PRIVATE KEY" block).
	// Absent: generated (AWS_KMS), or the key waits for an import
	// (EXTERNAL, PendingImport).
	KeyMaterial string `json:"KeyMaterial"`
	// ExpirationModel and ValidTo (RFC 3339) describe the imported
	// material of an EXTERNAL key, as ImportKeyMaterial's parameters do.
	ExpirationModel string `json:"ExpirationModel"`
	ValidTo         string `json:"ValidTo"`
	// Enabled defaults to true.
	Enabled *bool `json:"Enabled"`
	// Policy is a JSON object or a string holding one.
	Policy  json.RawMessage `json:"Policy"`
	Tags    []store.Tag     `json:"Tags"`
	Aliases []string        `json:"Aliases"`
}

// decodeSeedMaterial reads KeyMaterial: base64, or a PEM "PRIVATE KEY"
// block (PKCS#8, as openssl genpkey writes it). Errors never quote it.
func decodeSeedMaterial(s string) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(s), "-----BEGIN") {
		block, rest := pem.Decode([]byte(strings.TrimSpace(s)))
		if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
			return nil, errors.New(`a PEM value must be one "PRIVATE KEY" block (PKCS#8; convert others with openssl pkcs8 -topk8 -nocrypt)`)
		}
		return block.Bytes, nil
	}
	m, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		return nil, errors.New("not base64 (e.g. openssl rand -base64 32 for a SYMMETRIC_DEFAULT key, base64 -w0 of a PKCS#8 DER private key)")
	}
	return m, nil
}

// SeedAlias is an alias of a seed file.
type SeedAlias struct {
	AliasName   string `json:"AliasName"`
	TargetKeyID string `json:"TargetKeyId"`
}

// LoadSeedFile reads and checks a seed file; errors name the file (and
// the line of a JSON error).
func LoadSeedFile(path string) (*SeedFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f SeedFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("seed %s%s: %w", path, config.JSONErrorLine(b, err), err)
	}
	return &f, nil
}

// ApplySeedFile creates what the seed file declares and is missing; it is
// run at every start, so a seed is idempotent. Key material never appears
// in a log line or an error.
func ApplySeedFile(ctx context.Context, svc *kms.Service, account, path string, log *slog.Logger) error {
	f, err := LoadSeedFile(path)
	if err != nil {
		return err
	}
	var created, aliases int
	aliasTargets := append([]SeedAlias(nil), f.Aliases...)
	for i, k := range f.Keys {
		in := kms.SeedKeyInput{ID: k.KeyID, Description: k.Description, KeySpec: k.KeySpec, KeyUsage: k.KeyUsage,
			Origin: k.Origin, Tags: k.Tags, Disabled: k.Enabled != nil && !*k.Enabled}
		if k.KeyID == "" {
			return fmt.Errorf("seed %s: Keys[%d]: KeyId is required", path, i)
		}
		if k.KeyMaterial != "" {
			m, err := decodeSeedMaterial(k.KeyMaterial)
			if err != nil {
				return fmt.Errorf("seed %s: key %s: KeyMaterial: %w", path, k.KeyID, err)
			}
			in.Material = m
		}
		if k.ValidTo != "" {
			t, err := time.Parse(time.RFC3339, k.ValidTo)
			if err != nil {
				return fmt.Errorf("seed %s: key %s: ValidTo %q: want RFC 3339 (2027-01-02T15:04:05Z)", path, k.KeyID, k.ValidTo)
			}
			in.ValidTo = t
		}
		in.ExpirationModel = k.ExpirationModel
		if len(k.Policy) > 0 && string(k.Policy) != "null" {
			var s string
			if json.Unmarshal(k.Policy, &s) == nil {
				in.Policy = s
			} else {
				in.Policy = string(k.Policy)
			}
		}
		ok, err := svc.SeedKey(ctx, account, in)
		clear(in.Material)
		if err != nil {
			return fmt.Errorf("seed %s: %w", path, err)
		}
		if ok {
			created++
		}
		for _, a := range k.Aliases {
			aliasTargets = append(aliasTargets, SeedAlias{AliasName: a, TargetKeyID: k.KeyID})
		}
	}
	for _, a := range aliasTargets {
		changed, err := svc.SeedAlias(ctx, account, a.AliasName, a.TargetKeyID)
		if err != nil {
			return fmt.Errorf("seed %s: %w", path, err)
		}
		if changed {
			aliases++
		}
	}
	log.Info("seed applied", "file", path, "keys", len(f.Keys), "keys_created", created, "aliases_changed", aliases)
	return nil
}
