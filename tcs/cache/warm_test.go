package cache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/internal/benchsize"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// TestHotKeysRoundTrip: the hostnames a cache answered are written to a
// hot-keys file and read back, the most recently used first; negative
// entries are left out; a limit keeps the first ones.
func TestHotKeysRoundTrip(t *testing.T) {
	t.Parallel()
	r := newFakeReader()
	c := cache.New(r, cache.Options{Shards: 1, Size: 100})
	ctx := context.Background()
	for i := range 5 {
		r.set(makeTenant("t"+hostOf(i), 1, hostOf(i)))
		if _, err := c.Lookup(ctx, hostOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Lookup(ctx, "nobody.example.com"); err == nil {
		t.Fatal("lookup of an unknown hostname succeeded")
	}
	hot := c.HotKeys(10)
	want := []string{hostOf(4), hostOf(3), hostOf(2), hostOf(1), hostOf(0)}
	if diff := cmp.Diff(want, hot); diff != "" {
		t.Fatalf("HotKeys (-want +got):\n%s", diff)
	}
	if got := c.HotKeys(2); !slices.Equal(got, want[:2]) {
		t.Fatalf("HotKeys(2) = %q, want %q", got, want[:2])
	}

	path := filepath.Join(t.TempDir(), "sub", "hot-keys")
	if err := cache.WriteHotKeys(path, hot); err != nil {
		t.Fatal(err)
	}
	got, err := cache.ReadHotKeys(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ReadHotKeys (-want +got):\n%s", diff)
	}
	if got, err := cache.ReadHotKeys(path, 3); err != nil || !slices.Equal(got, want[:3]) {
		t.Fatalf("ReadHotKeys(limit 3) = %q, %v; want %q", got, err, want[:3])
	}
	// Written again, the file is replaced whole.
	if err := cache.WriteHotKeys(path, want[:1]); err != nil {
		t.Fatal(err)
	}
	if got, err := cache.ReadHotKeys(path, 0); err != nil || !slices.Equal(got, want[:1]) {
		t.Fatalf("after a second write: %q, %v; want %q", got, err, want[:1])
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("the directory holds %d files, want only the hot-keys file (no temporary left)", len(entries))
	}
}

// TestHotKeysSpreadOverShards: with many shards, HotKeys returns n
// hostnames, every one cached.
func TestHotKeysSpreadOverShards(t *testing.T) {
	t.Parallel()
	r := newFakeReader()
	c := cache.New(r, cache.Options{Shards: 16, Size: 10_000})
	for i := range 500 {
		r.set(makeTenant("t"+hostOf(i), 1, hostOf(i)))
		if _, err := c.Lookup(context.Background(), hostOf(i)); err != nil {
			t.Fatal(err)
		}
	}
	hot := c.HotKeys(100)
	if len(hot) != 100 {
		t.Fatalf("HotKeys(100) returned %d hostnames", len(hot))
	}
	seen := map[string]bool{}
	for _, h := range hot {
		if seen[h] {
			t.Fatalf("HotKeys returned %s twice", h)
		}
		seen[h] = true
		if _, ok := c.Peek(h); !ok {
			t.Fatalf("HotKeys returned %s, which is not cached", h)
		}
	}
	if got := len(c.HotKeys(10_000)); got != 500 {
		t.Fatalf("HotKeys(10000) returned %d hostnames, want all 500", got)
	}
}

// TestReadHotKeysErrors: a missing file wraps ErrNoHotKeys; a file that is
// not a hot-keys file, or holds a line that is not a normalised hostname,
// is an error naming the file and the line.
func TestReadHotKeysErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := cache.ReadHotKeys(missing, 0); !errors.Is(err, cache.ErrNoHotKeys) || !strings.Contains(err.Error(), missing) {
		t.Fatalf("missing file: %v, want ErrNoHotKeys naming %s", err, missing)
	}
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty", "", "line 1: not a hot-keys file"},
		{"no header", "acme.example.com\n", "line 1: not a hot-keys file"},
		{"binary", "\x00\x01\x02garbage", "line 1: not a hot-keys file"},
		{"upper case", "# tcs hot keys v1\nacme.example.com\nACME.example.com\n", `line 3: "ACME.example.com" is not a normalised hostname`},
		{"not a hostname", "# tcs hot keys v1\nacme example\n", `line 2: "acme example" is not a normalised hostname`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := cache.ReadHotKeys(path, 0)
			if err == nil {
				t.Fatalf("ReadHotKeys = %q, want an error", got)
			}
			if !strings.Contains(err.Error(), "hot-keys file "+path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to name %s and say %q", err, path, tc.want)
			}
			if errors.Is(err, cache.ErrNoHotKeys) {
				t.Fatalf("error %q wraps ErrNoHotKeys; the file exists", err)
			}
		})
	}
}

// TestWarm: Warm reads each hostname once and caches the tenants, so that
// lookups of them are hits with no further read; unknown hostnames and
// failed reads are counted, hostnames already fresh are not read again.
func TestWarm(t *testing.T) {
	t.Parallel()
	r := newFakeReader()
	c := cache.New(r, cache.Options{})
	var hosts []string
	for i := range 50 {
		r.set(makeTenant("t"+hostOf(i), 1, hostOf(i)))
		hosts = append(hosts, hostOf(i))
	}
	if _, err := c.Lookup(context.Background(), hostOf(0)); err != nil {
		t.Fatal(err)
	}
	st, err := c.Warm(context.Background(), append(hosts, "nobody.example.com"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if st.Loaded != 49 || st.Failed != 0 {
		t.Fatalf("Warm = %+v, want 49 loaded (one already cached), none failed", st)
	}
	if n := r.calls.Load(); n != 51 {
		t.Fatalf("replica reads = %d, want 51 (one lookup, 49 + 1 warm-up reads)", n)
	}
	before := c.Stats()
	for _, h := range hosts {
		res, err := c.Lookup(context.Background(), h)
		if err != nil || res.Stale {
			t.Fatalf("Lookup %s after the warm-up: %+v, %v", h, res, err)
		}
	}
	after := c.Stats()
	if r.calls.Load() != 51 || after.Misses != before.Misses || after.PositiveHits-before.PositiveHits != 50 {
		t.Fatalf("lookups after the warm-up: %d reads, %d misses, %d hits; want no read, no miss, 50 hits",
			r.calls.Load()-51, after.Misses-before.Misses, after.PositiveHits-before.PositiveHits)
	}
	if before.Misses != 1 {
		t.Fatalf("misses = %d, want 1: warm-up reads are not misses", before.Misses)
	}

	r2 := newFakeReader()
	r2.setErr(errors.New("replica down"))
	c2 := cache.New(r2, cache.Options{ReadTimeout: time.Second})
	st, err = c2.Warm(context.Background(), hosts[:3], 0)
	if err != nil || st.Loaded != 0 || st.Failed != 3 {
		t.Fatalf("Warm of a failing replica = %+v, %v; want 3 failed, no error", st, err)
	}
}

// TestWarmBounded: Warm returns when its context ends, even while reads
// block, with the context's error and what it loaded until then.
func TestWarmBounded(t *testing.T) {
	t.Parallel()
	r := newFakeReader()
	r.set(makeTenant("acme", 1, "acme.example.com"))
	r.setHold(true)
	c := cache.New(r, cache.Options{ReadTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		st  cache.WarmStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := c.Warm(ctx, []string{"acme.example.com", hostOf(1), hostOf(2), hostOf(3)}, 1)
		done <- result{st, err}
	}()
	r.nextRead(t).answer(makeTenant("acme", 1, "acme.example.com"))
	r.nextRead(t) // held, never answered; with one reader, acme's answer is counted
	select {
	case res := <-done:
		t.Fatalf("Warm returned %+v before its context ended", res)
	default:
	}
	cancel()
	select {
	case res := <-done:
		if !errors.Is(res.err, context.Canceled) || res.st.Loaded != 1 {
			t.Fatalf("Warm = %+v, %v; want 1 loaded, context.Canceled", res.st, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Warm did not return after its context ended")
	}
}

// TestUnreadableSince: the replica counts as unreadable from the first of
// FailingAfter failed reads in a row; a read that succeeds, or
// ProbeReplica finding it back, ends it.
func TestUnreadableSince(t *testing.T) {
	t.Parallel()
	clk := newClock()
	r := newFakeReader()
	c := cache.New(r, cache.Options{Now: clk.Now, FailingAfter: 3})
	r.setErr(errors.New("replica down"))
	first := clk.Now()
	for i := range 3 {
		if _, ok := c.UnreadableSince(); ok {
			t.Fatalf("unreadable after %d failed reads, want after 3", i)
		}
		if err := c.ProbeReplica(cache.ProbeHostnameForTest); err == nil {
			t.Fatal("ProbeReplica of a failing replica succeeded")
		}
		clk.Advance(time.Second)
	}
	since, ok := c.UnreadableSince()
	if !ok || !since.Equal(first) {
		t.Fatalf("UnreadableSince = %v, %v; want %v, true (the first failure)", since, ok, first)
	}
	if !c.Stats().ReplicaFailing {
		t.Fatal("Stats().ReplicaFailing is false")
	}
	r.setErr(nil)
	if err := c.ProbeReplica(cache.ProbeHostnameForTest); err != nil {
		t.Fatalf("ProbeReplica of a replica that answers NotFound: %v", err)
	}
	if _, ok := c.UnreadableSince(); ok {
		t.Fatal("still unreadable after a successful probe")
	}
	// A new streak counts from its own first failure.
	r.setErr(errors.New("down again"))
	second := clk.Now()
	for range 3 {
		_ = c.ProbeReplica(cache.ProbeHostnameForTest)
		clk.Advance(time.Second)
	}
	if since, ok := c.UnreadableSince(); !ok || !since.Equal(second) {
		t.Fatalf("second streak: UnreadableSince = %v, %v; want %v", since, ok, second)
	}
}

// BenchmarkHotKeys measures HotKeys(10,000) over a cache of a million
// tenant entries, which a node runs once a minute (each shard's lock is
// held while its keys are copied). -short: 20,000 entries, a smoke run: its
// figures mean nothing.
func BenchmarkHotKeys(b *testing.B) {
	c := cache.New(newFakeReader(), cache.Options{})
	t := makeTenant("acme", 1, "acme.example.com")
	for i := range benchsize.Pick(1_000_000, 20_000) {
		c.Put(hostOf(i), t)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if n := len(c.HotKeys(10_000)); n != 10_000 {
			b.Fatalf("HotKeys returned %d", n)
		}
	}
}
