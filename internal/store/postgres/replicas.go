package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Change is one committed change announced by the keyhold_changed trigger:
// the table and the row's two naming columns (keys: account id and key id;
// aliases: account id and name; grants: account id and key id;
// custom_key_stores: account id and store id; access_keys: principal ARN
// and key id; principals: account id and ARN; principal_policies: principal
// ARN and policy name).
type Change struct {
	Table string
	A, B  string
}

// Listen delivers every change other writers commit to onChange, on a
// dedicated connection, until ctx ends. Whenever the connection is (re)made
// it calls onReset first: changes made while it was down were not heard,
// so the caller must forget everything it cached. Both callbacks run on
// Listen's goroutine, one at a time. ready, when not nil, is closed once
// the first LISTEN is in place.
func (d *DB) Listen(ctx context.Context, log *slog.Logger, onChange func(Change), onReset func(), ready chan<- struct{}) {
	for ctx.Err() == nil {
		err := d.listenOnce(ctx, onChange, onReset, &ready)
		if ctx.Err() != nil {
			return
		}
		if log != nil {
			log.Warn("cache invalidation listener lost the database; caches are dropped and it reconnects", "err", err)
		}
		onReset()
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (d *DB) listenOnce(ctx context.Context, onChange func(Change), onReset func(), ready *chan<- struct{}) error {
	cfg := d.ConnConfig()
	delete(cfg.RuntimeParams, "statement_timeout")
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN keyhold_changes"); err != nil {
		return err
	}
	onReset()
	if *ready != nil {
		close(*ready)
		*ready = nil
	}
	for {
		// A bounded wait with a ping between waits notices a database that
		// went away without closing the connection.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if wctx.Err() != nil && !conn.IsClosed() {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := conn.Ping(pctx)
				cancel()
				if err == nil {
					continue
				}
				return err
			}
			return err
		}
		var p []*string
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil || len(p) != 3 || p[0] == nil {
			return fmt.Errorf("postgres.Listen: unexpected payload %q", n.Payload)
		}
		c := Change{Table: *p[0]}
		if p[1] != nil {
			c.A = *p[1]
		}
		if p[2] != nil {
			c.B = *p[2]
		}
		onChange(c)
	}
}

// Lead runs work while this replica holds the leader lock (a session-level
// advisory lock on a dedicated connection) and tries to take it every
// interval otherwise. work's context ends when the lock is lost (the
// connection broke) or ctx ends; when the leader process dies, PostgreSQL
// ends its session and releases the lock, and another replica takes it
func (d *DB) Lead(ctx context.Context, interval time.Duration, log *slog.Logger, work func(ctx context.Context)) {
	for ctx.Err() == nil {
		led, err := d.leadOnce(ctx, interval, log, work)
		if ctx.Err() != nil {
			return
		}
		if err != nil && log != nil && led {
			log.Warn("lost leadership", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (d *DB) leadOnce(ctx context.Context, interval time.Duration, log *slog.Logger, work func(ctx context.Context)) (bool, error) {
	cfg := d.ConnConfig()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	for {
		var got bool
		// One leader per schema: keyholds sharing a database in separate
		// schemas (tests do) are separate deployments.
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1::bigint # hashtextextended(current_schema(), 0))", LockLeader).Scan(&got); err != nil {
			return false, err
		}
		if got {
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(interval):
		}
	}
	if log != nil {
		log.Info("this replica is the leader: it runs the background jobs")
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		work(wctx)
	}()
	defer func() {
		cancel()
		<-done
	}()
	// Keep checking the session that holds the lock; if it breaks, the
	// lock is gone (another replica may already hold it), so stop work.
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-time.After(interval):
		}
		pctx, pcancel := context.WithTimeout(ctx, interval)
		err := conn.Ping(pctx)
		pcancel()
		if err != nil {
			return true, err
		}
	}
}
