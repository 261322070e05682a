package streamer_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
)

// BenchmarkResyncPipeline measures a resync of every tenant through the
// embedded backends, on disk, as tcsctl resync --all runs against make run:
// the catalog appends resync events in requests of 1,000 tenants, the
// publisher moves them to the stream, and three regions' appliers apply
// them (ApplyBatch per stream batch). It reports tenants/s from the first
// request until every region has applied every event. Seeding (one fsynced
// create per tenant) is not timed. -short: 1,500 tenants (two requests), a
// smoke run: its figures mean nothing.
func BenchmarkResyncPipeline(b *testing.B) {
	n := benchsize.Pick(5000, 1500)
	dir := b.TempDir()
	src, err := bolt.Open(filepath.Join(dir, "catalog.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	reqs := make([]catalog.ResyncRequest, n)
	for i := range n {
		id := fmt.Sprintf("tenant-%07d", i)
		if _, err := src.Create(ctx, storetest.NewTenant(id, id+".example.com", "www."+id+".example.com"), "bench"); err != nil {
			b.Fatal(err)
		}
		reqs[i] = catalog.ResyncRequest{ID: id}
	}
	if err := src.AckOutbox(ctx, 0, 1<<62); err != nil { // the creates are not what is measured (one shard: bbolt)
		b.Fatal(err)
	}
	stream, err := boltlog.Open(filepath.Join(dir, "stream.db"), boltlog.Options{PollInterval: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2"}
	reg := prometheus.NewRegistry()
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() { _ = streamer.NewPublisher(streamer.PublisherConfig{Outbox: src, Stream: stream}).Run(runCtx) })
	for _, region := range regions {
		rep, err := boltreplica.Open(filepath.Join(dir, "replica-"+region+".db"), boltreplica.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer rep.Close()
		a := streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: stream, Replica: rep, Registerer: reg})
		wg.Go(func() { _ = a.Run(runCtx) })
	}
	applied := func() float64 {
		mfs, _ := reg.Gather()
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "tcs_apply_events_total" {
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total
	}

	rounds := 0
	for b.Loop() {
		rounds++
		for chunk := range slices.Chunk(reqs, catalog.MaxResyncTenants) {
			if _, err := src.Resync(ctx, chunk, nil); err != nil {
				b.Fatal(err)
			}
		}
		want := float64(rounds * n * len(regions))
		testwait.Until(b, 5*time.Minute, 2*time.Millisecond, fmt.Sprintf("%v events to be applied", want), func() (bool, string) {
			got := applied()
			return got >= want, fmt.Sprintf("%v applied", got)
		})
	}
	b.ReportMetric(float64(rounds*n)/b.Elapsed().Seconds(), "tenants/s")
}
