package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/benchsize"
)

// BenchmarkLookupViewHit is BenchmarkLookupHit through LookupView: a hit
// over a hot set of 100 to 10,000 of 1,000,000 cached hostnames, one
// goroutine; hot=10000/fields=id+status+version also reads three fields of
// the answer, as a request would, through LookupView (api=view) and Lookup
// (api=lookup). -short: 10,000 hostnames (benchTenants), a smoke run: its
// figures mean nothing.
func BenchmarkLookupViewHit(b *testing.B) {
	c, names := benchSetup(b)
	benchHotHits(b, names, func(ctx context.Context, h string) error { _, err := c.LookupView(ctx, h); return err })
	// Reading fields, through either API: Lookup's tenant held decoded
	// (all 10,000 are, once hit) against the view's record.
	for _, api := range []string{"view", "lookup"} {
		b.Run("hot=10000/fields=id+status+version/api="+api, func(b *testing.B) {
			seq := hotSequence(names, 10_000)
			b.ReportAllocs()
			i, sink := 0, 0
			for b.Loop() {
				n, err := readThree(c, api, seq[i&(len(seq)-1)])
				if err != nil {
					b.Fatal(err)
				}
				sink += n
				i++
			}
			if sink == 0 {
				b.Fatal("no fields read")
			}
		})
	}
}

// readThree looks hostname h up through api ("view": LookupView, "lookup":
// Lookup) and reads three fields of the answer.
func readThree(c *Client, api, h string) (int, error) {
	if api == "view" {
		v, err := c.LookupView(context.Background(), h)
		return len(v.ID()) + len(v.Status()) + int(v.Version()), err
	}
	t, err := c.Lookup(context.Background(), h)
	if err != nil {
		return 0, err
	}
	return len(t.ID) + len(t.Status) + int(t.Version), nil
}

// BenchmarkLookupViewUniform is BenchmarkLookupHitUniform through
// LookupView (hits uniform over 1,000,000 hostnames, on every core), beside
// the floor of the machine in the same run: floor=N-dependent-reads is N
// bytes read at random from a 1 GiB array, each at an address that depends
// on the byte read before (each a cache miss and a TLB miss, on 4 KiB
// pages). A view hit makes four such reads: the benchmark's own two (the
// hostname's string header in the 16 MB slice of names, then its bytes,
// spread over ~30 MB, as in BenchmarkLookupHitUniform), then the cache's
// two (the hostname's slot, then its record). fields=id+status+version
// reads three fields of each answer, through LookupView (api=view) and
// Lookup (api=lookup, which decodes nearly every time). -short: 10,000
// hostnames (benchTenants), a smoke run: its figures mean nothing. -short:
// floor's array is 16 MiB.
func BenchmarkLookupViewUniform(b *testing.B) {
	c, names := benchSetup(b)
	ctx := context.Background()
	b.Run("view", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				if _, err := c.LookupView(ctx, names[r.IntN(len(names))]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	for _, api := range []string{"view", "lookup"} {
		b.Run("fields=id+status+version/api="+api, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 0))
				sink := 0
				for pb.Next() {
					n, err := readThree(c, api, names[r.IntN(len(names))])
					if err != nil {
						b.Error(err)
						return
					}
					sink += n
				}
				floorSink.Add(uint64(sink))
			})
		})
	}
	// Made here and let go of when done, so that what runs next
	// (BenchmarkGC) does not count it.
	mem := floorMemory()
	mask := uint64(len(mem) - 1)
	for _, reads := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("floor=%d-dependent-reads", reads), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 0))
				var x uint64
				for pb.Next() {
					// Each read's address depends on the value the one
					// before read (as a record's offset comes from its
					// slot); successive lookups do not depend on each
					// other, so the processor may overlap them, as it
					// may successive hits.
					i := r.Uint64()
					for range reads {
						i = (i + uint64(mem[i&mask])) * 0x9e3779b97f4a7c15
					}
					x += i
				}
				floorSink.Add(x)
			})
		})
	}
}

// floorMemory returns 1 GiB of memory (16 MiB under -short), every page
// written (an untouched page would read as the one shared zero page, always
// cached).
func floorMemory() []byte {
	mem := make([]byte, benchsize.Pick(1<<30, 1<<24))
	for i := 0; i < len(mem); i += 512 {
		mem[i] = byte(i >> 9)
	}
	return mem
}

// floorSink keeps the reads of the parallel benchmarks from being optimised
// away.
var floorSink atomic.Uint64

// BenchmarkViewFields is the processor's cost of a View's accessors, on one
// document in the CPU's caches (a tenant with every field set, 3
// hostnames): field=id is the first field, version one near the end (each
// accessor scans from the start), database a message read into a
// tenant.Database, all every accessor once (as readAll).
func BenchmarkViewFields(b *testing.B) {
	t := richDoc("tenant-0042", 7, "acme.example.com", "www.acme.example.com", "acme.example.org")
	t.UpdatedAt = time.Date(2026, 12, 6, 20, 0, 0, 0, time.UTC)
	t.UpdatedBy = "admin@example.com"
	doc, err := encodeDoc(t)
	if err != nil {
		b.Fatal(err)
	}
	v := View{doc: doc}
	var sink int
	for _, bc := range []struct {
		name string
		read func()
	}{
		{"id", func() { sink += len(v.ID()) }},
		{"status", func() { sink += len(v.Status()) }},
		{"version", func() { sink += int(v.Version()) }},
		{"database", func() { d, _ := v.Database(); sink += d.Port }},
		{"has-hostname", func() {
			if v.HasHostname("acme.example.org") {
				sink++
			}
		}},
		{"all", func() { sink += readAll(v) }},
	} {
		b.Run("field="+bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.read()
			}
		})
	}
	if sink == 0 {
		b.Fatal("nothing read")
	}
}

// readAll reads every field of v once, allocating nothing.
func readAll(v View) int {
	n := len(v.ID()) + len(v.Status()) + int(v.Version()) + len(v.Region()) + len(v.UpdatedBy()) + v.UpdatedAt().Second()
	for h := range v.Hostnames() {
		n += len(h)
	}
	for k, p := range v.Products() {
		n += len(k) + int(p.Users) + len(p.State) + len(p.Edition)
	}
	for k, l := range v.Labels() {
		n += len(k) + len(l)
	}
	if d, ok := v.Database(); ok {
		n += d.Port + len(d.Host)
	}
	if m, ok := v.Migration(); ok {
		n += len(m.By) + len(m.Step)
	}
	return n
}
