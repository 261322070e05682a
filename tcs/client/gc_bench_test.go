package client

import (
	"context"
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// BenchmarkGC measures what a full cache costs the garbage collector: one
// forced collection (runtime.GC, ns/op) and the GC CPU time it used
// (gc-cpu-ms, all cores: what it takes from request work) and its
// stop-the-world pauses (pause-µs), with nothing cached, with 1,000,000
// hostnames sharing 1,000 tenant documents (the cache's own structures),
// and with 1,000,000 hostnames each with its own document decoded from the
// wire (as a real cache holds them: the documents dominate). heap-MB is the
// live heap, scan-MB the bytes the collector scanned in the last cycle
// (the mark work, which unlike the times does not depend on the machine's
// load). -short: 10,000 hostnames (benchTenants), a smoke run: its figures
// mean nothing.
func BenchmarkGC(b *testing.B) {
	dropBenchClient()
	var docBytes int // of the case running, if it counts them
	cases := []struct {
		name string
		fill func() (*Client, error)
	}{
		{"empty", func() (*Client, error) { c, _, err := filledClient(0); return c, err }},
		{"1M-shared-docs", func() (*Client, error) { c, _, err := filledClient(benchTenants()); return c, err }},
		{"1M-own-docs", func() (*Client, error) { c, docs, err := ownDocsClient(benchTenants()); docBytes = docs; return c, err }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			c, err := tc.fill()
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			runtime.GC()
			runtime.GC()
			samples := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/total:bytes"}}
			metrics.Read(samples)
			cpu0 := samples[0].Value.Float64()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			pause0 := ms.PauseTotalNs
			for b.Loop() {
				runtime.GC()
			}
			metrics.Read(samples)
			runtime.ReadMemStats(&ms)
			n := float64(b.N)
			b.ReportMetric((samples[0].Value.Float64()-cpu0)*1e3/n, "gc-cpu-ms")
			b.ReportMetric(float64(ms.PauseTotalNs-pause0)/1e3/n, "pause-µs")
			b.ReportMetric(float64(samples[1].Value.Uint64())/(1<<20), "heap-MB")
			b.ReportMetric(float64(samples[2].Value.Uint64())/(1<<20), "scan-MB")
			if docBytes > 0 {
				b.ReportMetric(float64(docBytes)/float64(benchTenants()), "doc-B")
				b.ReportMetric((float64(samples[1].Value.Uint64())-float64(docBytes))/float64(benchTenants()), "B/tenant-beyond-doc")
			}
			runtime.KeepAlive(c)
		})
	}
}

// ownDocsClient returns a client with n hostnames cached, each owned by a
// tenant document of its own, decoded from the wire as the client decodes
// the answers it caches (every string its own allocation).
func ownDocsClient(n int) (_ *Client, docBytes int, _ error) {
	c, err := New(context.Background(), WithRegions("127.0.0.1:1"), WithCacheSize(n), WithTTL(time.Hour), withoutWatch())
	if err != nil {
		return nil, 0, err
	}
	tk := c.cache.begin()
	now := c.cache.clock()
	for i := range n {
		h := fmt.Sprintf("host-%d.tenants.example.com", i)
		wire, err := proto.Marshal(tcsv1.TenantToProto(replicatest.Doc(fmt.Sprintf("tenant-%07d", i), 1, h)))
		if err != nil {
			return nil, 0, err
		}
		docBytes += len(wire)
		var p tcsv1.Tenant
		if err := proto.Unmarshal(wire, &p); err != nil {
			return nil, 0, err
		}
		t, err := tcsv1.TenantFromProto(&p)
		if err != nil {
			return nil, 0, err
		}
		c.cache.put(h, entry{t: t, readAt: now, region: "eu-west-1"}, tk)
	}
	return c, docBytes, nil
}
