package cli

import (
	"context"

	"github.com/keyhold/keyhold/internal/api/hsmapi"
	"github.com/keyhold/keyhold/internal/awsjson"
	"github.com/keyhold/keyhold/internal/hsm"
)

// DatabaseFile is the embedded store's file in the data directory.
const DatabaseFile = "keyhold.db"

// OpenRecords opens the data directory's store for an owner command (`keyhold
// hsm ...`): a second handle on the database the server uses, which SQLite
// allows (WAL); the server caches no cluster record, so it sees the change.
//
// With KEYHOLD_DATABASE_URL set, the records are in that PostgreSQL database.
func OpenRecords(ctx context.Context, dataDir string) (hsm.Records, func(), error) {
	db, err := OpenDatabase(ctx, databaseURLFromEnv(), dataDir, 0, nil)
	if err != nil {
		return nil, nil, err
	}
	return db, func() { db.Close() }, nil
}

// CloudHSMExtra wires the HSM cluster control plane (cloudhsmv2) into a
// keyhold instance and gives the KMS domain the cluster manager for CloudHSM
// key stores. cfg.Dir is the clusters' token directory (DATADIR/hsm for
// serve); their records go to the instance's store.
func CloudHSMExtra(cfg hsm.Config) func(context.Context, Extras) ([]*awsjson.Service, func(), error) {
	return func(ctx context.Context, env Extras) ([]*awsjson.Service, func(), error) {
		if cfg.Records == nil {
			cfg.Records = env.Store
		}
		if cfg.Sealer == nil && env.Root != nil {
			cfg.Sealer = env.Root
		}
		m, err := hsm.Open(ctx, cfg)
		if err != nil {
			return nil, nil, err
		}
		hctx, stop := context.WithCancel(context.Background())
		if env.Lead != nil {
			env.Lead(hctx, m.RunHousekeeping)
		} else {
			go m.RunHousekeeping(hctx)
		}
		if env.CloudHSM != nil {
			env.CloudHSM.SetClusters(m)
		}
		return []*awsjson.Service{hsmapi.New(m, cfg.Region, env.AccountID)}, func() { stop(); m.Close() }, nil
	}
}
