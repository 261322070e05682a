package worktest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// WatchOverlaps samples what members count on every 5 ms until the test
// ends: countsOn(now) returns, by member id, the tenants that member counts
// on at now (an end-to-end test's view of each client's assignments). The
// func it returns lists every time so far that two members counted on one
// tenant: the tenant, the two members, when it began and how long it
// lasted (or "since" for one still going on). An empty list is the
// exactly-once property held at every sample.
func WatchOverlaps[T any](t testing.TB, countsOn func(now time.Time) map[string]map[string]T) func() []string {
	type pair struct{ tenant, a, b string }
	var (
		mu    sync.Mutex
		found []string
	)
	began := map[pair]time.Time{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			now := time.Now()
			owners := map[string][]string{}
			for member, tenants := range countsOn(now) {
				for id := range tenants {
					owners[id] = append(owners[id], member)
				}
			}
			seen := map[pair]bool{}
			mu.Lock()
			for id, ms := range owners {
				slices.Sort(ms)
				for i := 1; i < len(ms); i++ {
					p := pair{id, ms[0], ms[i]}
					seen[p] = true
					if _, ok := began[p]; !ok {
						began[p] = now
					}
				}
			}
			for p, t0 := range began {
				if !seen[p] {
					found = append(found, fmt.Sprintf("%s and %s both counted on %s from %s for %v", p.a, p.b, p.tenant, t0.Format("15:04:05.000"), now.Sub(t0).Round(time.Millisecond)))
					delete(began, p)
				}
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(found)
		for p, t0 := range began {
			out = append(out, fmt.Sprintf("%s and %s both count on %s since %s", p.a, p.b, p.tenant, t0.Format("15:04:05.000")))
		}
		return out
	}
}
