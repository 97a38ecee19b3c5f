package integration

import (
	"testing"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/keystore/keystoretest"
)

// TestCloudHSMDriverConformance runs the key store conformance suite
// against the CloudHSM driver over SoftHSM2: a real cluster (two HSM
// processes in two zones, kmsuser created by the owner's command), the
// driver keyhold's domain uses.
func TestCloudHSMDriverConformance(t *testing.T) {
	h := startCloudHSM(t)
	const password = "KmsUserPassword1"
	id := h.newCluster(t, clusterSpec{azs: []string{zoneA, zoneB}, activate: true, kmsuser: password})
	st := keystore.Store{AccountID: h.Account, ID: "cks-0123456789abcdef0", Name: "conformance", Type: keystore.TypeCloudHSM,
		Config: keystore.Config{CloudHsmClusterID: id}, Secret: keystore.Secret{Password: password}}
	keystoretest.RunDriver(t, keystoretest.Harness{
		Driver: h.Instance.CloudHSM,
		Store:  st,
		BadSecret: func(s *keystore.Store) string {
			s.Secret.Password, s.Secret.PendingPassword = "NotThePassword1", ""
			return "INVALID_CREDENTIALS"
		},
		// An outage is every HSM of the cluster gone; recovery is two new
		// ones (the token, and so the keys, survive).
		Break:          func(t *testing.T) { h.deleteHSMs(t, id, zoneA, zoneB) },
		Restore:        func(t *testing.T) { h.addHSM(t, id, zoneA); h.addHSM(t, id, zoneB); h.waitHSMs(t, id, zoneA, zoneB) },
		DestroyRemoves: true,
	})
}
