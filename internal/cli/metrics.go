package cli

import (
	"context"

	"github.com/keyhold/keyhold/internal/metrics"
	"github.com/keyhold/keyhold/internal/store"
)

// customKeyStoreStates lists every custom key store's persisted connection
// state for the metrics gauge (the domain persists each transition).
func customKeyStoreStates(st store.Store) func(ctx context.Context) []metrics.StoreState {
	return func(ctx context.Context) []metrics.StoreState {
		accts, err := st.ListAccounts(ctx)
		if err != nil {
			return nil
		}
		var out []metrics.StoreState
		for _, a := range accts {
			recs, err := st.ListCustomKeyStores(ctx, a.ID)
			if err != nil {
				continue
			}
			for _, r := range recs {
				state := r.ConnectionState
				if state == "" {
					state = "DISCONNECTED"
				}
				out = append(out, metrics.StoreState{AccountID: r.AccountID, ID: r.ID, Type: r.Type, State: state})
			}
		}
		return out
	}
}
