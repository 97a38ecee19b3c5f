package cli

import (
	"context"
	"sync"
)

// leaderJobs are the background jobs that run in one process of those
// sharing a database: the leader (on PostgreSQL, the replica holding the
// leader advisory lock; on SQLite, the only process). Jobs can be added at
// any time; each runs while this process leads, with a context that ends
// when leadership (or the job's own context) does.
type leaderJobs struct {
	mu   sync.Mutex
	jobs []func(context.Context)
	ctx  context.Context // nil while not leading
	wg   *sync.WaitGroup
}

// add registers job (run until ctx ends) and starts it at once if this
// process leads.
func (l *leaderJobs) add(ctx context.Context, job func(context.Context)) {
	bound := func(lead context.Context) {
		jctx, cancel := context.WithCancel(lead)
		defer cancel()
		stop := context.AfterFunc(ctx, cancel)
		defer stop()
		if ctx.Err() == nil {
			job(jctx)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs = append(l.jobs, bound)
	if l.ctx != nil {
		l.start(bound)
	}
}

func (l *leaderJobs) start(job func(context.Context)) {
	ctx, wg := l.ctx, l.wg
	wg.Add(1)
	go func() { defer wg.Done(); job(ctx) }()
}

// lead runs every job until ctx ends (leadership is lost), then waits for
// them to stop.
func (l *leaderJobs) lead(ctx context.Context) {
	var wg sync.WaitGroup
	l.mu.Lock()
	l.ctx, l.wg = ctx, &wg
	for _, job := range l.jobs {
		l.start(job)
	}
	l.mu.Unlock()
	<-ctx.Done()
	l.mu.Lock()
	l.ctx, l.wg = nil, nil
	l.mu.Unlock()
	wg.Wait()
}
