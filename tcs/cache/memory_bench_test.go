package cache_test

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tcs-dev/tcs/internal/benchsize"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// BenchmarkMemoryPerTenant fills one cache with 1,000,000 tenants and
// reports the live heap per cached tenant, the serialised document size, the
// overhead beyond the document (target ≤ 600 B), and the process RSS. It
// measures memory, not time: ns/op is the cost of the fill per tenant.
// -short: 10,000 tenants, a smoke run: its figures mean nothing.
func BenchmarkMemoryPerTenant(b *testing.B) {
	n := benchsize.Pick(1_000_000, 10_000)
	for range b.N {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		c := cache.New(newFakeReader(), cache.Options{Size: benchRoom(n), TTL: time.Hour})
		var docBytes int
		for i := range n {
			t := makeTenant(fmt.Sprintf("t%07d", i), 1, hostOf(i))
			if i == 0 {
				buf, _ := proto.Marshal(tcsv1.TenantToProto(t))
				docBytes = len(buf)
			}
			if !c.Put(hostOf(i), t) {
				b.Fatal("Put failed")
			}
		}
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if c.Len() != n {
			b.Fatalf("cache holds %d entries, want %d", c.Len(), n)
		}
		perTenant := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		b.ReportMetric(perTenant, "heap-B/tenant")
		b.ReportMetric(float64(docBytes), "doc-B")
		b.ReportMetric(perTenant-float64(docBytes), "overhead-B/tenant")
		b.ReportMetric(float64(rssBytes())/(1<<20), "rss-MiB")
		runtime.KeepAlive(c)
	}
}

// rssBytes reads the process's resident set size from /proc (0 elsewhere).
func rssBytes() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
