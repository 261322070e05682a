package cache

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/safefile"
)

// Warm-up: a node notes the hostnames it answers most (HotKeys) in a file
// on its local disk (WriteHotKeys), and when it starts again reads them
// back (ReadHotKeys) and fills its cache from the replica (Warm) before it
// reports ready, so that its first lookups are hits, not replica reads.

// hotKeysHeader is the first line of a hot-keys file: a file that does not
// start with it is not one (or is of another format version).
const hotKeysHeader = "# tcs hot keys v1"

// DefaultWarmConcurrency is Warm's default number of concurrent reads.
const DefaultWarmConcurrency = 16

// hotRing is how many recent uses of tenant entries the shards remember
// in all, for HotKeys (at least 64 per shard): 1 MiB of string headers.
const hotRing = 1 << 16

// HotKeys returns up to n distinct hostnames of tenant entries the cache
// lately installed or answered, the most recent first: each shard
// remembers its last uses (installs, and one hit in promoteEvery) in a
// ring, and HotKeys takes the shards' newest in turn. It never walks the
// LRU lists, so it holds each shard's lock only to copy its ring,
// whatever the cache's size. A hostname evicted or found unknown since may
// be among them. Negative entries are left out: a flood of made-up
// hostnames must not become the next start's warm-up.
func (c *Cache) HotKeys(n int) []string {
	if n <= 0 {
		return nil
	}
	rings := make([][]string, len(c.shards)) // newest first
	for i := range c.shards {
		sh := &c.shards[i]
		ring := make([]string, 0, len(sh.hot))
		sh.mu.Lock()
		for k := 1; k <= len(sh.hot); k++ {
			h := sh.hot[(sh.hotNext-k+len(sh.hot))%len(sh.hot)]
			if h == "" {
				break
			}
			ring = append(ring, h)
		}
		sh.mu.Unlock()
		rings[i] = ring
	}
	out := make([]string, 0, min(n, len(c.shards)*len(c.shards[0].hot)))
	seen := make(map[string]struct{}, cap(out))
	for k := 0; len(out) < n; k++ {
		took := false
		for _, ring := range rings {
			if k >= len(ring) {
				continue
			}
			took = true
			if _, dup := seen[ring[k]]; dup {
				continue
			}
			seen[ring[k]] = struct{}{}
			out = append(out, ring[k])
			if len(out) == n {
				break
			}
		}
		if !took {
			break
		}
	}
	return out
}

// WriteHotKeys replaces the hot-keys file at path by hostnames, atomically
// (a new file renamed over the old one: a crash leaves the old list or the
// new one, never half of one).
func WriteHotKeys(path string, hostnames []string) error {
	var b bytes.Buffer
	b.WriteString(hotKeysHeader)
	b.WriteByte('\n')
	for _, h := range hostnames {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	if err := safefile.WriteAtomic(path, b.Bytes()); err != nil {
		return fmt.Errorf("hot-keys file %s: write: %w", path, err)
	}
	return nil
}

// ErrNoHotKeys is wrapped by ReadHotKeys's error when the file does not
// exist (a node's first start).
var ErrNoHotKeys = errors.New("no hot-keys file")

// ReadHotKeys reads the hostnames of the hot-keys file at path, at most
// limit of them (limit <= 0: all), in the file's order. A missing file is
// an error wrapping ErrNoHotKeys; a file that is not a hot-keys file, or
// holds a line that is not a normalised hostname, is an error naming the
// file and the line, and no hostname is returned.
func ReadHotKeys(path string, limit int) ([]string, error) {
	data, err := safefile.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("hot-keys file %s: %w", path, ErrNoHotKeys)
	}
	if err != nil {
		return nil, fmt.Errorf("hot-keys file %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 64<<10)
	if !sc.Scan() || sc.Text() != hotKeysHeader {
		return nil, fmt.Errorf("hot-keys file %s: line 1: not a hot-keys file (want the header %q)", path, hotKeysHeader)
	}
	var out []string
	for line := 2; sc.Scan(); line++ {
		h := sc.Text()
		if h == "" {
			continue
		}
		if n, err := tenant.NormalizeHostname(h); err != nil || n != h {
			return nil, fmt.Errorf("hot-keys file %s: line %d: %q is not a normalised hostname", path, line, truncate(h, 80))
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("hot-keys file %s: %w", path, err)
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// WarmStats say what Warm did.
type WarmStats struct {
	// Loaded counts the hostnames whose tenant answer is now cached, Failed
	// those whose read failed; the others had no tenant, were already
	// cached fresh, or were not read before ctx ended.
	Loaded, Failed int
	// Duration is how long Warm took.
	Duration time.Duration
}

// Warm fills the cache with hostnames (normalised), read from the replica
// by concurrency readers at once (<= 0: DefaultWarmConcurrency), until all
// are read or ctx ends; then it returns at once (reads in flight finish in
// the background, bounded by ReadTimeout, and are installed) with ctx's
// error. Hostnames cached fresh already are not read again. Warm's reads
// follow a miss's rules (installed fresh only if no invalidation or gap
// raced with them), count as replica reads and failures, but not as
// misses.
func (c *Cache) Warm(ctx context.Context, hostnames []string, concurrency int) (WarmStats, error) {
	start := time.Now()
	if concurrency <= 0 {
		concurrency = DefaultWarmConcurrency
	}
	work := make(chan string)
	var (
		mu sync.Mutex
		st WarmStats
		wg sync.WaitGroup
	)
	for range min(concurrency, max(len(hostnames), 1)) {
		wg.Go(func() {
			for h := range work {
				if _, _, ok := c.freshAnswer(h); ok {
					continue
				}
				ch := c.flight.DoChan(h, func() (any, error) { return c.fill(h) })
				var r singleflight.Result
				select {
				case r = <-ch:
				case <-ctx.Done():
					select {
					case r = <-ch: // finished as ctx ended: count it
					default:
						return
					}
				}
				res, _ := r.Val.(Result)
				mu.Lock()
				switch {
				case r.Err == nil && !res.Stale:
					st.Loaded++
				case r.Err != nil && tenant.ErrorCode(r.Err) != tenant.NotFound, res.Stale:
					st.Failed++
				}
				mu.Unlock()
			}
		})
	}
	var err error
feed:
	for _, h := range hostnames {
		select {
		case work <- h:
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		err = ctx.Err()
	}
	st.Duration = time.Since(start)
	return st, err
}
