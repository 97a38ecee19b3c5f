package cli

import (
	"context"

	"github.com/keyhold/keyhold/internal/api/hsmapi"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/hsm"
	"github.com/keyhold/keyhold/internal/kms"
)

// CloudHSMExtra wires the HSM cluster control plane (cloudhsmv2) into a
// keyhold instance and gives the KMS domain the cluster manager for CloudHSM
// key stores. cfg.Dir is the clusters' directory (DATADIR/hsm for serve).
func CloudHSMExtra(cfg hsm.Config) func(context.Context, *kms.Service, string) ([]*awsjson.Service, func(), error) {
	return func(ctx context.Context, svc *kms.Service, account string) ([]*awsjson.Service, func(), error) {
		m, err := hsm.Open(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		svc.SetClusters(m)
		return []*awsjson.Service{hsmapi.New(m, cfg.Region, account)}, func() { m.Close() }, nil
	}
}
