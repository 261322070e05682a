package main

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// BenchmarkPropagation measures, over 1,000 writes, the time from a REST
// write being acknowledged to its version being visible through Lookup in
// all three regions (the slowest region counts), and reports p50 and p99.
// Target with the embedded backends: p99 ≤ 50 ms. The writes come one
// after another, faster than the REST API's default rate limit allows one
// caller: it is off (--rate-limit 0). -short: 20 writes, a smoke run: its
// figures mean nothing.
func BenchmarkPropagation(b *testing.B) {
	measurePropagation(b, start(b, "--seed=false", "--rate-limit=0"), benchsize.Pick(1000, 20))
}

// BenchmarkPropagationAWS is BenchmarkPropagation on the AWS backends
// against the local emulators (DynamoDB Local, kinesalite polled every
// 100 ms, fauxqs), over 200 writes. Target: p99 ≤ 1 s. -short: 5 writes,
// a smoke run: its figures mean nothing.
func BenchmarkPropagationAWS(b *testing.B) {
	s, _ := startAWS(b, "--seed=false", "--rate-limit=0")
	measurePropagation(b, s, benchsize.Pick(200, 5))
}

func measurePropagation(b *testing.B, s *system, writes int) {
	ctx := context.Background()
	api := s.api(b, adm)
	if _, err := api.Create(ctx, json.RawMessage(`{"id":"acme","hostnames":["acme.example.com"]}`)); err != nil {
		b.Fatalf("create: %v", err)
	}
	version := int64(1)
	b.ResetTimer()
	for range b.N {
		lat := make([]time.Duration, 0, writes)
		for i := range writes {
			_, err := api.Patch(ctx, "acme", version, httpclient.MergePatch{"labels": map[string]string{"n": strconv.Itoa(i)}})
			acked := time.Now()
			if err != nil {
				b.Fatalf("write %d: %v", i, err)
			}
			version++
			for region, c := range s.clients {
				waitVersion(b, region, c, version)
			}
			lat = append(lat, time.Since(acked))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	}
}

func waitVersion(b *testing.B, region string, c tcsv1.TenantContextServiceClient, v int64) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: "acme.example.com"})
		if err == nil && res.GetTenant().GetVersion() >= v {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never served version %d (last %v, %v)", region, v, res.GetTenant().GetVersion(), err)
		}
	}
}
