package kms

import (
	"context"
	"errors"

	"github.com/keyhold/keyhold/internal/keystore"
	"github.com/keyhold/keyhold/internal/store"
)

// Several replicas share one store; each keeps its own caches and its own
// custom key store sessions. The composition root tells the domain about
// changes other writers committed (PostgreSQL LISTEN/NOTIFY) through
// Invalidate, and about changes it may have missed through ForgetCaches.

// Invalidate drops what the caches hold for one changed row: table is the
// store's table ("keys", "aliases", "grants", "custom_key_stores"), a and
// b the row's naming columns (account id and key id, alias name or store
// id). A custom key store change also brings this replica's session in
// line with the stored connection state. Safe for concurrent use.
func (s *Service) Invalidate(table, a, b string) {
	s.mu.Lock()
	s.epoch.Add(1)
	s.mu.Unlock()
	switch table {
	case "keys":
		s.cacheKeyDropAll(a, b)
		s.dropGrants(a, b)
	case "aliases":
		s.dropAliasAll(a, b)
	case "grants":
		s.dropGrants(a, b)
	case "custom_key_stores":
		s.cks.follow(a, b)
	}
}

// ForgetCaches drops every cached key, alias and grant list and brings
// every custom key store session in line with the store.
func (s *Service) ForgetCaches() {
	all := func(string, store.Key) bool { return true }
	s.mu.Lock()
	s.epoch.Add(1)
	s.keys.DeleteFunc(all)
	s.aliases.DeleteFunc(func(string, string) bool { return true })
	s.mu.Unlock()
	s.grants.wmu.Lock()
	s.grants.byKey.DeleteFunc(func(grantKey, []store.Grant) bool { return true })
	s.grants.wmu.Unlock()
	s.cks.followAll()
}

// dropGrants drops the cached grants of key id of account in every Region
// (a notification names no Region).
func (s *Service) dropGrants(account, keyID string) {
	s.grants.wmu.Lock()
	s.regions.Range(func(r, _ any) bool {
		s.grants.byKey.Delete(grantKey{account, r.(string), keyID})
		return true
	})
	s.grants.wmu.Unlock()
}

// follow brings this replica's connection to a store in line with the
// state another replica stored: a disconnect there logs this replica out
// (its keys turn Unavailable here too); a connect there makes this replica
// open its own session, without writing the state back.
func (c *customKeyStores) follow(account, id string) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx := c.s.bg
		gen := c.gen(account, id)
		rec, err := c.s.st.GetCustomKeyStore(ctx, account, id)
		if errors.Is(err, store.ErrNotFound) {
			c.mu.Lock()
			delete(c.conns, c.key(account, id))
			c.mu.Unlock()
			return
		}
		if err != nil {
			c.s.log.Warn("custom key store change from another replica", "store", id, "err", err)
			return
		}
		c.followRecord(ctx, rec, gen)
	}()
}

// gen is the store's connect/disconnect generation on this replica.
func (c *customKeyStores) gen(account, id string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cn := c.conns[c.key(account, id)]; cn != nil {
		return cn.gen
	}
	return 0
}

// followRecord acts on rec, read when this replica's generation was gen: if
// this replica connected or disconnected the store since, its own action
// is newer than rec and stands.
func (c *customKeyStores) followRecord(ctx context.Context, rec store.CustomKeyStore, gen int) {
	k := c.key(rec.AccountID, rec.ID)
	c.mu.Lock()
	cn := c.conns[k]
	if cn == nil {
		cn = &conn{state: Disconnected}
		c.conns[k] = cn
	}
	if cn.gen != gen || cn.acting > 0 || rec.Version < cn.seen {
		// This replica changed the store since rec was read.
		c.mu.Unlock()
		return
	}
	switch {
	case (rec.ConnectionState == Disconnected || rec.ConnectionState == Disconnecting || rec.ConnectionState == "") &&
		(cn.state == Connected || cn.state == Connecting || cn.state == Failed):
		cn.state, cn.errCode = Disconnecting, ""
		cn.gen++
		c.mu.Unlock()
		c.release(ctx, rec)
		c.setConn(rec, Disconnected, "", false)
		c.s.log.Info("custom key store disconnected through another replica", "store", rec.ID)
	case rec.ConnectionState == Connecting && c.leading.Load() && !cn.worker && cn.state != Connected:
		// A connect asked of another replica (or left by a leader that
		// died): the leader's worker does it.
		if cn.state != Connecting {
			cn.state, cn.errCode = Connecting, ""
			cn.gen++
		}
		gen := cn.gen
		c.mu.Unlock()
		c.runWorker(rec, gen)
	case rec.ConnectionState == Connecting && (cn.state == Disconnected || cn.state == Failed || cn.state == ""):
		cn.state, cn.errCode = Connecting, ""
		cn.gen++
		c.mu.Unlock()
	case rec.ConnectionState == Connected && !cn.worker && (cn.state == Disconnected || cn.state == Failed || cn.state == Connecting || cn.state == ""):
		cn.state, cn.errCode = Connecting, ""
		cn.gen++
		gen := cn.gen
		c.mu.Unlock()
		c.connectLocal(rec, gen)
	case rec.ConnectionState == Failed && !cn.worker && cn.state == Connecting:
		cn.state, cn.errCode = Failed, rec.ConnectionErrorCode
		cn.gen++
		c.mu.Unlock()
	default:
		c.mu.Unlock()
	}
}

// connectLocal opens this replica's own session to a store another replica
// connected; the stored state stays that replica's business.
func (c *customKeyStores) connectLocal(rec store.CustomKeyStore, gen int) {
	bg := c.s.bg
	code := c.join(bg, rec)
	state := Connected
	if code != "" {
		state = Failed
	}
	c.mu.Lock()
	cn := c.conns[c.key(rec.AccountID, rec.ID)]
	stale := cn == nil || cn.gen != gen
	if !stale {
		cn.state, cn.errCode = state, code
	}
	c.mu.Unlock()
	if stale {
		c.release(bg, rec)
		return
	}
	c.s.log.Info("custom key store session of this replica", "store", rec.ID, "state", state, "error_code", code)
}

func (c *customKeyStores) followAll() {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx := c.s.bg
		gens := make(map[string]int)
		c.mu.RLock()
		for k, cn := range c.conns {
			gens[k] = cn.gen
		}
		c.mu.RUnlock()
		accts, err := c.s.st.ListAccounts(ctx)
		if err != nil {
			return
		}
		for _, a := range accts {
			all, err := c.s.st.ListCustomKeyStores(ctx, a.ID)
			if err != nil {
				return
			}
			for _, rec := range all {
				c.followRecord(ctx, rec, gens[c.key(rec.AccountID, rec.ID)])
			}
		}
	}()
}

// join opens this replica's own connection to a store another replica
// connected (keystore.Joiner: without changing what they share); it
// returns "" or a ConnectionErrorCode.
func (c *customKeyStores) join(ctx context.Context, rec store.CustomKeyStore) string {
	drv, err := c.driver(rec.Type)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	j, ok := drv.(keystore.Joiner)
	if !ok {
		return c.connect(ctx, rec)
	}
	view, err := c.view(rec)
	if err != nil {
		return "INTERNAL_ERROR"
	}
	if err := j.Join(ctx, view); err != nil {
		code := keystore.ConnectionCode(err)
		c.s.log.Info("custom key store session of this replica failed", "store", rec.ID, "type", rec.Type, "code", code, "err", err)
		return code
	}
	c.startMonitor()
	return ""
}

// SetReplicated tells the domain it is one of several replicas sharing the
// store: from then on custom key store connect workers and health checks
// run only while RunLeader runs (on the leader), and Start opens this
// replica's own sessions to connected stores instead of connecting them
// again. Call it before Start.
func (s *Service) SetReplicated() {
	s.cks.replicated.Store(true)
	s.cks.leading.Store(false)
}

// RunLeader runs this replica's share of the leader's work until ctx ends:
// the connect workers of stores left CONNECTING (asked through another
// replica, or by a leader that died) and, from then on, of every connect
// asked through any replica, and the custom key stores' periodic health
// checks. Only a replicated Service needs it.
func (s *Service) RunLeader(ctx context.Context) {
	c := s.cks
	if !c.replicated.Load() {
		<-ctx.Done()
		return
	}
	c.leading.Store(true)
	defer c.leading.Store(false)
	c.followAll()
	select {
	case <-ctx.Done():
	case <-s.bg.Done():
	}
}
