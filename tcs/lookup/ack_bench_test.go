package lookup_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// BenchmarkAckCost measures what Watch acknowledgements cost a node's
// lookups: lookups per CPU-second of this process (cache hits, 64 callers
// over gRPC on loopback; CPU time, not wall time, so that other processes'
// load on a shared machine moves it less) while the node broadcasts 5 invalidations a second (of one
// tenant, "cold", nobody looks up), first with no Watch stream (none), then
// with 1,000 streams in rounds of three modes: their clients not acking
// (watching); acking as tcs/client does (acking: on one AckStream per
// stream, the seq of what they applied when it advanced, at most every
// client.DefaultAckInterval, and at once when the node asks with ack_now);
// and acking while someone waits for cold's latest change once a second
// (acking+waits: TenantStatus polled every 5 ms until all 1,000
// acknowledged it, as the catalog's propagation wait does, so cold's
// invalidations carry ack_now meanwhile and every client acks each: the
// worst case, a waited tenant changing 5 times a second). The rounds
// alternate so that the machine's noise falls on every mode alike.
// Everything runs in this process on the same cores, the watchers' side of
// the streams and acks included, so the differences are upper bounds on
// the node's cost. It reports each rate, acks per lookup, and the ratios
// acking/watching (the cost of acks; target ≥ 0.95), acking+waits/watching
// and acking/none (acks and 1,000 streams together). -short: 1,000
// tenants, 50 streams, one round, a smoke run: its figures mean nothing.
func BenchmarkAckCost(b *testing.B) {
	const callers = 64
	var (
		tenants  = benchsize.Pick(10_000, 1_000)
		watchers = benchsize.Pick(1000, 50)
		rounds   = benchsize.Pick(12, 1) // of each mode
	)
	rep := newFakeReplica()
	for i := range tenants {
		rep.set(makeTenant(fmt.Sprintf("t%06d", i), 1, benchHost(i)))
	}
	e := start(b, lookup.Config{Replica: rep, MaxWatchStreams: -1, MaxWatchPerCaller: -1, MissRate: -1, MissRatePerCaller: -1, LookupRate: -1}, lookup.ServeOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	for i := range tenants {
		if _, err := e.client.Lookup(ctx, &tcsv1.LookupRequest{Hostname: benchHost(i)}); err != nil {
			b.Fatal(err)
		}
	}
	// Watchers over 10 connections, lookups over 4 others.
	var conns []*grpc.ClientConn
	for range 14 {
		c, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	lookupAPIs := make([]tcsv1.TenantContextServiceClient, 4)
	for i := range lookupAPIs {
		lookupAPIs[i] = tcsv1.NewTenantContextServiceClient(conns[10+i])
	}
	// n lookups by callers callers; returns the CPU time this process
	// spent meanwhile (on them and on everything else it runs: streams,
	// acks, waits), which other processes' load on the machine changes far
	// less than the wall time.
	var next atomic.Int64
	lookups := func(n int) time.Duration {
		var left atomic.Int64
		left.Store(int64(n))
		var cw sync.WaitGroup
		began := cpuTime(b)
		for c := range callers {
			api := lookupAPIs[c%len(lookupAPIs)]
			cw.Go(func() {
				for left.Add(-1) >= 0 {
					i := int(next.Add(1) % int64(tenants))
					if _, err := api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: benchHost(i)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		cw.Wait()
		return cpuTime(b) - began
	}
	// 5 invalidations a second, of a tenant nobody looks up.
	var coldVersion atomic.Int64
	wg.Go(func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for v := int64(2); ; v++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			_ = e.hub.Broadcast(ctx, tcs.Invalidation{TenantID: "cold", Version: v, Hostnames: []string{"cold.example.com"}})
			coldVersion.Store(v)
		}
	})
	per := max(b.N/(3*rounds+1), 1)
	b.ResetTimer()
	none := lookups(per)
	b.StopTimer()

	var acking, waiting atomic.Bool
	var acks atomic.Int64
	for i := range watchers {
		api := tcsv1.NewTenantContextServiceClient(conns[i%10])
		stream, err := api.Watch(ctx, &tcsv1.WatchRequest{})
		if err != nil {
			b.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			b.Fatal(err)
		}
		session := first.GetResync().GetSessionId()
		applied := newSeq(first.GetSeq())
		urgent := make(chan struct{}, 1)
		wg.Go(func() {
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				if m.GetSeq() != 0 {
					applied.store(m.GetSeq())
				}
				if m.GetAckNow() {
					select {
					case urgent <- struct{}{}:
					default:
					}
				}
			}
		})
		ackStream, err := api.AckStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			t := time.NewTicker(client.DefaultAckInterval)
			defer t.Stop()
			// As tcs/client: at most every interval, or at once when
			// asked (then also the next message if what was applied is
			// acked already).
			var sent uint64
			var last time.Time
			asked := false
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				case <-urgent:
					asked = true
				case <-applied.wake:
				}
				seq := applied.Load()
				if seq <= sent || !acking.Load() || (!asked && time.Since(last) < client.DefaultAckInterval) {
					continue
				}
				if ackStream.Send(&tcsv1.AckRequest{SessionId: session, Seq: seq}) != nil {
					return
				}
				acks.Add(1)
				sent, last, asked = seq, time.Now(), false
			}
		})
	}
	// While acking, a wait a second for the latest change of "cold".
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !waiting.Load() {
				continue
			}
			v := coldVersion.Load()
			deadline := time.Now().Add(time.Second)
			for time.Now().Before(deadline) {
				st, err := e.srv.TenantStatus(ctx, "cold", max(v, 1))
				if err != nil || st.Clients.Acknowledged == watchers {
					break
				}
				time.Sleep(5 * time.Millisecond) // the catalog's fastest poll
			}
		}
	})
	var watching, acked, waited time.Duration
	var acksAcking, acksWaiting int64
	phase := func(ack, wait bool) (time.Duration, int64) {
		acking.Store(ack)
		waiting.Store(wait)
		time.Sleep(200 * time.Millisecond) // the acks in flight land, or every watcher acks once
		before := acks.Load()
		b.StartTimer()
		d := lookups(per)
		b.StopTimer()
		return d, acks.Load() - before
	}
	for range rounds {
		d, _ := phase(false, false)
		watching += d
		d, n := phase(true, false)
		acked, acksAcking = acked+d, acksAcking+n
		d, n = phase(true, true)
		waited, acksWaiting = waited+d, acksWaiting+n
		acking.Store(false)
		waiting.Store(false)
		time.Sleep(time.Second) // the node's marks of the waited tenant end
	}
	rate := func(n int, d time.Duration) float64 { return float64(n) / d.Seconds() } // per CPU-second
	noneRate, watchingRate := rate(per, none), rate(per*rounds, watching)
	ackingRate, waitingRate := rate(per*rounds, acked), rate(per*rounds, waited)
	b.ReportMetric(noneRate, "lookups/cpu-s-none")
	b.ReportMetric(watchingRate, "lookups/cpu-s-watching")
	b.ReportMetric(ackingRate, "lookups/cpu-s-acking")
	b.ReportMetric(waitingRate, "lookups/cpu-s-acking+waits")
	b.ReportMetric(ackingRate/watchingRate, "acking/watching")
	b.ReportMetric(waitingRate/watchingRate, "acking+waits/watching")
	b.ReportMetric(ackingRate/noneRate, "acking/none")
	b.ReportMetric(float64(acksAcking)/float64(per*rounds), "acks/lookup")
	b.ReportMetric(float64(acksWaiting)/float64(per*rounds), "acks/lookup-waits")
}

// seq is the seq a benchmark watcher applied, with a wake-up for its acker.
type seq struct {
	atomic.Uint64
	wake chan struct{}
}

func newSeq(first uint64) *seq {
	s := &seq{wake: make(chan struct{}, 1)}
	s.Store(first)
	return s
}

func (s *seq) store(v uint64) {
	s.Store(v)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
