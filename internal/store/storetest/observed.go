package storetest

import (
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/keyhold/keyhold/internal/store"
)

// RunObserved runs the conformance suite through store.Observe (the store
// latency metric's decorator) and checks what the observer was told: the
// decorator must change nothing the suite can see, and report every call
// under its Store method's name with its outcome.
func RunObserved(t *testing.T, open func(t *testing.T) store.Store) {
	var mu sync.Mutex
	calls := map[string]int{}
	classes := map[string]int{}
	negative := 0
	obs := func(method string, d time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		calls[method]++
		classes[method+" "+store.ErrorClass(err)]++
		if d < 0 {
			negative++
		}
	}
	Run(t, func(t *testing.T) store.Store { return store.Observe(open(t), obs) })

	methods := map[string]bool{}
	st := reflect.TypeFor[store.Store]()
	for i := 0; i < st.NumMethod(); i++ {
		methods[st.Method(i).Name] = true
	}
	var unknown []string
	for m := range calls {
		if !methods[m] {
			unknown = append(unknown, m)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("observer told of calls that are not Store methods: %v", unknown)
	}
	if negative > 0 {
		t.Errorf("%d negative durations", negative)
	}
	// The suite makes these calls and these outcomes, so the observer must
	// have seen them (a subset: the suite grows).
	for _, want := range []string{"CreateAccount ", "CreateAccount exists", "GetAccessKey not_found", "CreateKey ",
		"GetKey ", "GetKey not_found", "UpdateKey conflict", "CreateGrant limit", "Tx ", "Tx rolled_back"} {
		if classes[want] == 0 {
			t.Errorf("observer never told of %q; saw %v", want, classes)
		}
	}
	if len(calls) < 30 {
		t.Errorf("observer saw %d distinct methods, want >= 30: %v", len(calls), calls)
	}
}
