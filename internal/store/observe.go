package store

import (
	"context"
	"errors"
	"time"
)

//go:generate go run gen_observed.go

// Observer receives every call made through an observed Store: the Store
// method's name, how long it took and the error it returned (nil on
// success). It runs on the caller's goroutine after the call, so it must
// be quick and safe for concurrent use.
type Observer func(method string, d time.Duration, err error)

// Observe returns s with each call reported to obs (for the store latency
// metric); it changes nothing else. Inside Tx, the Store handed to the
// transaction body is observed too, so the calls a transaction makes are
// reported one by one and Tx's own duration spans them all. Close is not
// reported. A nil obs returns s.
//
// The methods are generated from the Store interface (go generate); a
// method added to Store and not yet generated passes through unobserved,
// and TestObservedCoversStore fails until it is.
func Observe(s Store, obs Observer) Store {
	if obs == nil {
		return s
	}
	return &observed{Store: s, obs: obs}
}

type observed struct {
	Store
	obs Observer
}

func (o *observed) within(tx Store) Store { return &observed{Store: tx, obs: o.obs} }

// rolledBack is a call's error when its callback (a transaction body,
// UpdateHSMCluster's edit) returned it: the caller chose not to commit; the
// database did not fail.
type rolledBack struct{ err error }

func (r rolledBack) Error() string { return r.err.Error() }
func (r rolledBack) Unwrap() error { return r.err }

// callbackErr is what an observed call with a callback reports: err, marked
// rolledBack when it is the callback's own error.
func callbackErr(err, cbErr error) error {
	if err != nil && cbErr != nil && errors.Is(err, cbErr) {
		return rolledBack{err}
	}
	return err
}

// ErrorClass names the kind of a Store error for metrics: "" for nil,
// rolled_back (a transaction body or an UpdateHSMCluster edit returned an
// error, so nothing was committed), not_found, exists (every uniqueness
// rule), conflict, limit, canceled (the caller's context ended),
// unavailable, or other (a fault: a driver error, a corrupt row). Only the
// last two are worth an alert; the others are answers the domain expects.
func ErrorClass(err error) string {
	var rb rolledBack
	switch {
	case err == nil:
		return ""
	case errors.As(err, &rb):
		return "rolled_back"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrExists), errors.Is(err, ErrExternalKeyInUse), errors.Is(err, ErrBackupHistoryInUse):
		return "exists"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrLimit):
		return "limit"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "other"
}
