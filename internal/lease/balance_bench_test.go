package lease_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
)

// BenchmarkBalance plans one worker's scan of a group of 10,000 leases
// (one per tenant) shared by 10 weighted workers, one of them dead (its
// leases expired): what a tenant work pool's scan costs in CPU.
func BenchmarkBalance(b *testing.B) {
	const n, workers = 10_000, 10
	ls := make([]lease.Lease, n)
	weights := map[string]float64{}
	for i := range ls {
		ls[i] = lease.Lease{Key: fmt.Sprintf("tenant-%05d", i), Owner: fmt.Sprintf("w%d", i%workers), Counter: 1}
	}
	for w := range workers {
		weights[fmt.Sprintf("w%d", w)] = float64(1 + w%3)
	}
	now := time.Unix(1000, 0)
	obs := lease.NewObserver("w0", 10*time.Second)
	obs.Observe(now.Add(-time.Minute), ls)
	for i := range ls {
		if ls[i].Owner != "w9" {
			ls[i].Counter++
		}
	}
	obs.Observe(now, ls)
	in := lease.Input{
		Me: "w0", Leases: ls, Weights: weights,
		Expired: func(l lease.Lease) bool { return obs.Expired(now, l) },
		Holds:   func(l lease.Lease) bool { return l.Owner == "w0" },
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := lease.Balance(in)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.Take) != n/workers {
			b.Fatalf("%d leases to take, want the dead worker's %d", len(p.Take), n/workers)
		}
		p.Steals(p.Target)
	}
}
