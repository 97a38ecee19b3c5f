package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/keyhold/keyhold/internal/store"
)

// groupCommit is group commit for a database with one writer at a time
// (SQLite): every write transaction of the store runs as a savepoint inside
// one shared transaction, one after another, and the shared transaction
// commits once for all of them, so a group of concurrent writes costs one
// commit (one fsync of the WAL) instead of one each. A write is
// acknowledged (its Commit returns nil) only after the commit of its group
// returned, so "a write returns only when durable" holds for each of them;
// a write rolled back (its own error) leaves the others of its group alone.
//
// Without it, concurrent writers queue on SQLite's write lock by polling
// (the busy handler sleeps 1, 2, 5, 10 ... ms between tries) and each pays
// its own fsync: about 700 CreateKey/s on this project's 2-core box.
//
// One goroutine owns the shared transaction. A writer asks for a slot
// (begin), gets the transaction once the writers before it released theirs,
// runs its statements in it from its own goroutine, and says whether to keep
// them (Commit) or not (Rollback); Commit then waits for the group's commit.
// The handoff through channels orders everything a writer did before those
// done before the next writer's turn. A slot is held only by store methods
// and Tx bodies, as SQLite's write lock was before.
type groupCommit struct {
	db    *sql.DB
	after func() error // Dialect.AfterCommit
	reqs  chan *slot
	quit  chan struct{}
	wg    sync.WaitGroup
	max   int
	close sync.Once
}

// maxGroup bounds how many writes share one commit, so that a steady stream
// of writers still sees commits (and its acknowledgements) regularly.
const maxGroup = 256

// errClosed is what writes get once the store is closed.
var errClosed = errors.New("store closed")

// slot is one write transaction's turn in the shared transaction.
type slot struct {
	ctx context.Context
	// turn carries the shared transaction, or nil when the write does not
	// get one (err says why).
	turn chan *sql.Tx
	err  error
	// keep: the writer's verdict on its statements (true: keep).
	keep chan bool
	// done: nil once the group holding the kept statements committed.
	done chan error
}

func newGroupCommit(db *sql.DB, after func() error) *groupCommit {
	g := &groupCommit{db: db, after: after, reqs: make(chan *slot), quit: make(chan struct{}), max: maxGroup}
	g.wg.Add(1)
	go g.run()
	return g
}

// stop ends the writer goroutine once no write holds a slot; later writes
// fail.
func (g *groupCommit) stop() {
	g.close.Do(func() { close(g.quit) })
	g.wg.Wait()
}

// acquire waits for a turn in the shared transaction.
func (g *groupCommit) acquire(ctx context.Context) (*slot, *sql.Tx, error) {
	s := &slot{ctx: ctx, turn: make(chan *sql.Tx, 1), keep: make(chan bool, 1), done: make(chan error, 1)}
	select {
	case g.reqs <- s:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-g.quit:
		return nil, nil, errClosed
	}
	tx := <-s.turn // always answered: the writer owns s from here
	if tx == nil {
		return nil, nil, s.err
	}
	return s, tx, nil
}

// finish hands the turn back: keep the statements (and wait for them to be
// durable) or roll them back.
func (s *slot) finish(keep bool) error {
	s.keep <- keep
	return <-s.done
}

func (g *groupCommit) run() {
	defer g.wg.Done()
	for {
		var first *slot
		select {
		case first = <-g.reqs:
		case <-g.quit:
			return
		}
		g.group(first)
	}
}

// group runs first and every write that arrives while the group is open
// (up to max) in one transaction, then commits and answers them.
func (g *groupCommit) group(first *slot) {
	tx, err := g.db.BeginTx(context.Background(), nil)
	if err != nil {
		first.err = err
		first.turn <- nil
		return
	}
	var kept []*slot
	next := first
	for n := 0; ; n++ {
		if next != nil {
			if ok, broken := g.turn(tx, next); broken != nil {
				// The shared transaction is gone (SQLite rolls back the whole
				// transaction on some errors): nothing of the group is
				// durable, so nobody is told it is.
				tx.Rollback()
				for _, s := range kept {
					s.done <- fmt.Errorf("%w: group transaction aborted: %v", store.ErrUnavailable, broken)
				}
				return
			} else if ok {
				kept = append(kept, next)
			}
		}
		if n+1 >= g.max {
			break
		}
		select {
		case next = <-g.reqs:
			continue
		default:
		}
		break
	}
	err = tx.Commit()
	if err == nil && g.after != nil && len(kept) > 0 {
		if err = g.after(); err != nil {
			err = fmt.Errorf("%w: making the commit durable: %v", store.ErrUnavailable, err)
		}
	}
	for _, s := range kept {
		s.done <- err
	}
}

// turn gives s the transaction inside a savepoint and waits for its verdict.
// ok reports that s's statements were kept (s waits for the commit); broken
// is set when the shared transaction can no longer be used (s has been
// answered).
func (g *groupCommit) turn(tx *sql.Tx, s *slot) (ok bool, broken error) {
	if err := s.ctx.Err(); err != nil {
		s.err = err
		s.turn <- nil
		return false, nil
	}
	if _, err := tx.Exec("SAVEPOINT w"); err != nil {
		s.err = err
		s.turn <- nil
		return false, err
	}
	s.turn <- tx
	if <-s.keep {
		if _, err := tx.Exec("RELEASE w"); err != nil {
			s.done <- fmt.Errorf("%w: %v", store.ErrUnavailable, err)
			return false, err
		}
		return true, nil
	}
	_, err := tx.Exec("ROLLBACK TO w")
	if err == nil {
		_, err = tx.Exec("RELEASE w")
	}
	// A rolled-back write is answered at once: it needs no commit.
	s.done <- nil
	return false, err
}

// groupTx is a transaction run as a slot of the group.
type groupTx struct {
	s        *slot
	finished bool
}

func (t *groupTx) commit() error {
	if t.finished {
		return nil
	}
	t.finished = true
	return t.s.finish(true)
}

func (t *groupTx) rollback() error {
	if t.finished {
		return nil
	}
	t.finished = true
	return t.s.finish(false)
}

// detached runs statements without the caller's cancellation: interrupting
// a statement of SQLite's shared transaction (what go-sqlite3 does when a
// context ends) can roll back the whole transaction, the other writers'
// statements included. A write that got its turn is short; its context was
// checked before the turn.
type detached struct{ q querier }

func (d detached) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return d.q.ExecContext(context.WithoutCancel(ctx), q, args...)
}

func (d detached) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return d.q.QueryContext(context.WithoutCancel(ctx), q, args...)
}

func (d detached) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return d.q.QueryRowContext(context.WithoutCancel(ctx), q, args...)
}

// groupQuerier is the store's querier outside a transaction when writes are
// grouped: reads go to the pool; each ExecContext (every single-statement
// write of sqlstore) is a write transaction of its own in the group. Writes
// must use ExecContext, never a query with RETURNING.
type groupQuerier struct {
	pool querier
	g    *groupCommit
	d    *Dialect
}

func (q groupQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, tx, err := q.g.acquire(ctx)
	if err != nil {
		return nil, err
	}
	res, err := rebinder{detached{tx}, q.d}.ExecContext(ctx, query, args...)
	if err != nil {
		s.finish(false)
		return nil, err
	}
	// Read the result before the turn ends: it belongs to the transaction.
	r := execResult{}
	r.id, r.idErr = res.LastInsertId()
	r.n, r.nErr = res.RowsAffected()
	if err := s.finish(true); err != nil {
		return nil, err
	}
	return r, nil
}

func (q groupQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return q.pool.QueryContext(ctx, query, args...)
}

// QueryRowContext does not let ctx interrupt the read: for a context that
// can be canceled (every request's), go-sqlite3 starts a goroutine per
// statement to watch it, about 10 µs of a 40 µs GetKey, and a single-row
// read of the local database ends sooner than that is worth. Waiting for a
// pooled connection is not interrupted either; reads hold one for
// microseconds.
func (q groupQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return q.pool.QueryRowContext(context.WithoutCancel(ctx), query, args...)
}

type execResult struct {
	id, n       int64
	idErr, nErr error
}

func (r execResult) LastInsertId() (int64, error) { return r.id, r.idErr }
func (r execResult) RowsAffected() (int64, error) { return r.n, r.nErr }
