package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/internal/testredis"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// BenchmarkRedisGET is the alternative a team would reach for: the tenant
// document (protobuf, as the lookup API sends it) in a Redis on loopback,
// one GET round trip per lookup from one goroutine (ns/op), measured beside
// a cache hit of this client (hit-ns: one goroutine, hot set of 1,000 of
// 1,000,000 cached hostnames, timed before and after the GETs), and
// redis/hit, their ratio. The GET does not include decoding the document,
// which a Redis-backed lookup would need too. -short: 10,000 hostnames
// (benchTenants), a smoke run: its figures mean nothing.
func BenchmarkRedisGET(b *testing.B) {
	rdb := testredis.Start(b, 0)
	c, names := benchSetup(b)
	seq := hotSequence(names, 1_000)
	ctx := context.Background()

	doc, err := proto.Marshal(tcsv1.TenantToProto(replicatest.Doc("tenant-0000042", 7, "host-42.tenants.example.com")))
	if err != nil {
		b.Fatal(err)
	}
	const key = "tcs:host:host-42.tenants.example.com"
	if err := rdb.Set(ctx, key, doc, 0).Err(); err != nil {
		b.Fatal(err)
	}
	hits := func() float64 {
		const n = 2_000_000
		start := time.Now()
		for i := range n {
			if _, err := c.Lookup(ctx, seq[i&(len(seq)-1)]); err != nil {
				b.Fatal(err)
			}
		}
		return float64(time.Since(start).Nanoseconds()) / n
	}
	before := hits()
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := rdb.Get(ctx, key).Bytes()
		if err != nil || len(got) != len(doc) {
			b.Fatal(errors.Join(err, fmt.Errorf("got %d bytes, want %d", len(got), len(doc))))
		}
	}
	get := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	hit := (before + hits()) / 2
	b.ReportMetric(hit, "hit-ns")
	b.ReportMetric(get/hit, "redis/hit")
}
