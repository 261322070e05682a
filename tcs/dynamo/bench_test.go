package dynamo_test

import (
	"fmt"
	"testing"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/streamer"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// The benchmarks measure the latency of one call against DynamoDB Local on
// loopback: ns/op is the time a caller waits. Each Apply is one
// BatchGetItem and one TransactWriteItems (a duplicate, only the read); a
// lookup is two GetItems.

func BenchmarkApply(b *testing.B) {
	c := newClient(b)
	b.Run("Create", func(b *testing.B) {
		r := openFresh(b, c)
		i := 0
		for b.Loop() {
			i++
			id := fmt.Sprintf("t-%06d", i)
			mustApply(b, r, replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1, "www." + id + ".example.com": 1}, nil))
		}
	})
	b.Run("Update", func(b *testing.B) {
		r := openFresh(b, c)
		hosts := map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}
		v := int64(0)
		for b.Loop() {
			v++
			mustApply(b, r, replicatest.Event("acme", v, hosts, nil))
		}
	})
	b.Run("Duplicate", func(b *testing.B) {
		r := openFresh(b, c)
		ev := replicatest.Event("acme", 1, map[string]int64{"acme.example.com": 1, "www.acme.example.com": 1}, nil)
		mustApply(b, r, ev)
		for b.Loop() {
			if res := mustApply(b, r, ev); res.Applied {
				b.Fatal("duplicate applied")
			}
		}
	})
	b.Run("Create100Hostnames", func(b *testing.B) {
		// Split: the document, then 99 records, then 1.
		r := openFresh(b, c)
		i := 0
		for b.Loop() {
			i++
			mustApply(b, r, replicatest.Event(fmt.Sprintf("t-%06d", i), 1, hostSet(fmt.Sprintf("t%06d-", i), 100, 1), nil))
		}
	})
}

func BenchmarkLookupHostname(b *testing.B) {
	c := newClient(b)
	table := newTable(b, c)
	seed := openOn(b, c, table, replicadynamo.Config{})
	for i := range 100 {
		id := fmt.Sprintf("t-%03d", i)
		mustApply(b, seed, replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1}, nil))
	}
	for _, eventual := range []bool{false, true} {
		b.Run(map[bool]string{false: "Strong", true: "Eventual"}[eventual], func(b *testing.B) {
			r := openOn(b, c, table, replicadynamo.Config{EventualLookups: eventual})
			i := 0
			for b.Loop() {
				i++
				if _, err := r.LookupHostname(b.Context(), fmt.Sprintf("t-%03d.example.com", i%100)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("NotFound", func(b *testing.B) {
		r := openOn(b, c, table, replicadynamo.Config{})
		for b.Loop() {
			if _, err := r.LookupHostname(b.Context(), "nobody.example.com"); tenant.ErrorCode(err) != tenant.NotFound {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkApplierBatch: the streamer's applier on a DynamoDB replica, one
// batch of 100 new tenants per op (a Kinesis page during a resync or a
// backfill), one tenant at a time and DefaultApplyConcurrency at once.
// events/s is the figure to compare.
func BenchmarkApplierBatch(b *testing.B) {
	c := newClient(b)
	for _, conc := range []int{1, streamer.DefaultApplyConcurrency} {
		b.Run(fmt.Sprintf("Concurrency%d", conc), func(b *testing.B) {
			a := streamer.NewApplier(streamer.ApplierConfig{Region: "us-east-1", Replica: openFresh(b, c), Concurrency: conc})
			n := 0
			for b.Loop() {
				batch := make([]streamer.Message, 100)
				for i := range batch {
					n++
					id := fmt.Sprintf("t-%07d", n)
					data, err := streamer.EncodeEvent(replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1}, nil))
					if err != nil {
						b.Fatal(err)
					}
					batch[i] = streamer.Message{PartitionKey: id, Data: data}
				}
				if err := a.HandleBatch(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
