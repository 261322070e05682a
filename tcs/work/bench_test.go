package work_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/tcs/work"
)

// counting counts a Store's calls: reads (List) and writes (the rest).
type counting struct {
	lease.Store
	reads, writes *atomic.Int64
}

func (c counting) List(ctx context.Context) ([]lease.Lease, error) {
	c.reads.Add(1)
	return c.Store.List(ctx)
}
func (c counting) Create(ctx context.Context, key string, parents []string) error {
	c.writes.Add(1)
	return c.Store.Create(ctx, key, parents)
}
func (c counting) Take(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	c.writes.Add(1)
	return c.Store.Take(ctx, l)
}
func (c counting) Renew(ctx context.Context, key, token string) (lease.Lease, error) {
	c.writes.Add(1)
	return c.Store.Renew(ctx, key, token)
}
func (c counting) Checkpoint(ctx context.Context, key, token, cp string) error {
	c.writes.Add(1)
	return c.Store.Checkpoint(ctx, key, token, cp)
}
func (c counting) Release(ctx context.Context, key, token string) error {
	c.writes.Add(1)
	return c.Store.Release(ctx, key, token)
}
func (c counting) HandOver(ctx context.Context, key, token, to string) error {
	c.writes.Add(1)
	return c.Store.HandOver(ctx, key, token, to)
}
func (c counting) Decline(ctx context.Context, key, token, who string) error {
	c.writes.Add(1)
	return c.Store.Decline(ctx, key, token, who)
}
func (c counting) RequestSteal(ctx context.Context, l lease.Lease) error {
	c.writes.Add(1)
	return c.Store.RequestSteal(ctx, l)
}

// settledPool is a simulated pool of n members of equal capacity, settled,
// whose stores count their calls.
func settledPool(b *testing.B, n int) (*sim, *atomic.Int64, *atomic.Int64) {
	s := newSim(b)
	var reads, writes atomic.Int64
	for range n {
		sm := s.join(1, 1, 0)
		sm.store = counting{sm.store, &reads, &writes}
		m, err := work.NewMember(work.MemberConfig{Store: sm.store, Member: sm.id, LeaseDuration: leaseDuration,
			Tenants: func(b int) int { return s.tenants[b] }})
		if err != nil {
			b.Fatal(err)
		}
		sm.m = m
	}
	s.settle(5 * leaseDuration)
	return s, &reads, &writes
}

// BenchmarkRebalanceAfterDeath: 10 members share 256 buckets (10,000
// tenants hash into them); one dies without a word; rebalance-s is the
// simulated time (rounds every lease duration/8, lease 10 s) until every
// bucket is held again by a live member.
func BenchmarkRebalanceAfterDeath(b *testing.B) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		s, _, _ := settledPool(b, 10)
		b.StartTimer()
		s.members[3].crashed = true
		start := s.real
		for {
			s.advance(leaseDuration / 8)
			s.step()
			held := 0
			for _, bs := range s.owned() {
				held += len(bs)
			}
			if held == work.Buckets {
				break
			}
		}
		total += s.real.Sub(start)
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "rebalance-s")
}

// BenchmarkSteadyState: the lease store operations of a settled pool of 10
// members (10,000 tenants) per second of (simulated) time, with a member
// round every lease duration/8 and record renewals every lease duration/4
// (lease 10 s): what a pool costs on DynamoDB (each write one conditional
// UpdateItem; each read one strongly consistent Query of the pool's ~266
// items, about 40 KB). The bucket leases are not renewed (the records are
// their liveness): 4 writes/s, where renewing each bucket made 106.
func BenchmarkSteadyState(b *testing.B) {
	s, reads, writes := settledPool(b, 10)
	reads.Store(0)
	writes.Store(0)
	start := s.real
	b.ResetTimer()
	for range b.N {
		s.advance(leaseDuration / 8)
		s.step()
	}
	secs := s.real.Sub(start).Seconds()
	b.ReportMetric(float64(reads.Load())/secs, "reads/s")
	b.ReportMetric(float64(writes.Load())/secs, "writes/s")
}
