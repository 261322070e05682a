package lookup_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// BenchmarkAckCost measures what Watch acknowledgements cost a node's
// lookups: ns per Lookup (cache hits, 64 callers over gRPC on loopback)
// while the node broadcasts 5 invalidations a second, with no Watch
// stream, with 1,000 streams that never ack, and with 1,000 streams that
// ack as tcs/client does (the seq of what they applied, at most every
// 100 ms and only when it advanced: about 5 acks a second each at this
// invalidation rate, 5,000 a second in all). Everything runs in this process on the same cores, the
// watchers' side of the acks included, so the difference is an upper bound
// on the node's cost. Compare the sub-benchmarks' ns/op (target: acking
// ≥ 0.95× the throughput of none).
func BenchmarkAckCost(b *testing.B) {
	for _, tc := range []struct {
		name     string
		watchers int
		ack      bool
	}{{"watchers=0", 0, false}, {"watchers=1000/no-acks", 1000, false}, {"watchers=1000/acks", 1000, true}} {
		b.Run(tc.name, func(b *testing.B) { benchAckCost(b, tc.watchers, tc.ack) })
	}
}

func benchAckCost(b *testing.B, watchers int, ack bool) {
	const tenants = 10_000
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
		var applied atomic.Uint64
		applied.Store(first.GetSeq())
		wg.Go(func() {
			for {
				m, err := stream.Recv()
				if err != nil {
					return
				}
				if m.GetSeq() != 0 {
					applied.Store(m.GetSeq())
				}
			}
		})
		if ack {
			wg.Go(func() {
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				var sent uint64
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if seq := applied.Load(); seq > sent {
						if _, err := api.Ack(ctx, &tcsv1.AckRequest{SessionId: session, Seq: seq}); err == nil {
							acks.Add(1)
						}
						sent = seq
					}
				}
			})
		}
	}
	// 5 invalidations a second, of a tenant nobody looks up.
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
		}
	})
	time.Sleep(500 * time.Millisecond) // the watchers' first acks
	var next atomic.Int64
	b.SetParallelism(32) // 64 callers on 2 cores
	startAcks := acks.Load()
	began := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		api := tcsv1.NewTenantContextServiceClient(conns[10+next.Add(1)%4])
		for pb.Next() {
			i := int(next.Add(1) % tenants)
			if _, err := api.Lookup(ctx, &tcsv1.LookupRequest{Hostname: benchHost(i)}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	elapsed := time.Since(began)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "lookups/s")
	b.ReportMetric(float64(acks.Load()-startAcks)/elapsed.Seconds(), "acks/s")
}
