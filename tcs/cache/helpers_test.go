package cache_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/tcs/cache"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// clock is a settable clock.
type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// read is one replica read held by a fakeReader until the test answers it.
type read struct {
	hostname string
	ctx      context.Context
	reply    chan reply
}

type reply struct {
	t   *tenant.Tenant
	err error
}

// answer lets the read return t (nil: NotFound).
func (r *read) answer(t *tenant.Tenant) {
	if t == nil {
		r.reply <- reply{err: tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", r.hostname)}
		return
	}
	r.reply <- reply{t: t.Clone()}
}

// fakeReader is a replica read model: a map of hostname → tenant, an error to
// inject, and, when hold is set, reads that block until the test answers them
// (or their context ends), for deterministic races.
type fakeReader struct {
	mu     sync.Mutex
	byHost map[string]*tenant.Tenant
	err    error
	hold   bool
	reads  chan *read
	calls  atomic.Int64
}

func newFakeReader() *fakeReader {
	return &fakeReader{byHost: map[string]*tenant.Tenant{}, reads: make(chan *read, 1024)}
}

func (f *fakeReader) LookupHostname(ctx context.Context, hostname string) (*tenant.Tenant, error) {
	f.calls.Add(1)
	f.mu.Lock()
	hold, err, t := f.hold, f.err, f.byHost[hostname]
	f.mu.Unlock()
	if hold {
		r := &read{hostname: hostname, ctx: ctx, reply: make(chan reply, 1)}
		f.reads <- r
		select {
		case rp := <-r.reply:
			return rp.t, rp.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, tenant.Errorf(tenant.NotFound, "hostname %q has no tenant", hostname)
	}
	return t.Clone(), nil
}

func (f *fakeReader) set(t *tenant.Tenant) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range t.Hostnames {
		f.byHost[h] = t.Clone()
	}
}

func (f *fakeReader) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeReader) setHold(hold bool) {
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
}

// nextRead waits for the next held read.
func (f *fakeReader) nextRead(tb testing.TB) *read {
	tb.Helper()
	select {
	case r := <-f.reads:
		return r
	case <-time.After(10 * time.Second):
		tb.Fatal("no replica read arrived")
		return nil
	}
}

// makeTenant returns a realistic tenant (about 300 bytes on the wire).
func makeTenant(id string, version int64, hostnames ...string) *tenant.Tenant {
	return replicatest.Doc(id, version, hostnames...)
}

func hostOf(i int) string { return fmt.Sprintf("t%07d.example.com", i) }

// newCache returns a cache over a fresh fake reader and clock.
func newCache(tb testing.TB, opts cache.Options) (*cache.Cache, *fakeReader, *clock) {
	tb.Helper()
	r, clk := newFakeReader(), newClock()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.ReadTimeout == 0 {
		// Reads held by a test must not time out however slow the
		// machine; the tests of timeouts set their own.
		opts.ReadTimeout = time.Minute
	}
	return cache.New(r, opts), r, clk
}

// mustLookup looks hostname up and checks it gets tenant id at version.
func mustLookup(tb testing.TB, c *cache.Cache, hostname, id string, version int64) cache.Result {
	tb.Helper()
	res, err := c.Lookup(context.Background(), hostname)
	if err != nil {
		tb.Fatalf("Lookup(%q): %v", hostname, err)
	}
	if res.TenantID != id || res.Version != version {
		tb.Fatalf("Lookup(%q) = %s@%d, want %s@%d", hostname, res.TenantID, res.Version, id, version)
	}
	return res
}

func wantCode(tb testing.TB, err error, code tenant.Code) {
	tb.Helper()
	if got := tenant.ErrorCode(err); got != code {
		tb.Fatalf("error %v has code %q, want %q", err, got, code)
	}
}
