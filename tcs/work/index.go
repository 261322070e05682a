package work

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
)

// DefaultRescan is IndexConfig.Rescan's default.
const DefaultRescan = 10 * time.Minute

// maxPending bounds the tenants waiting to be re-read; beyond it the index
// rescans the whole replica instead.
const maxPending = 100_000

// IndexConfig configures an Index.
type IndexConfig struct {
	// Replica is the region's replica; it must be a tcs.Scanner (every
	// backend is).
	Replica tcs.Replica
	// Rescan is how often the whole replica is read again, to heal what the
	// feed lost. Default DefaultRescan.
	Rescan time.Duration
	// Logger receives the index's warnings. Nil discards them.
	Logger *slog.Logger
}

// Index is the ACTIVE tenants of a region's replica, by bucket: what the
// work pools share. It reads the whole replica when it starts (and every
// Rescan, and after the feed reports a gap), and re-reads a tenant when an
// invalidation names it (Feed wraps the lookup server's feed to see them),
// so a tenant created, suspended or deleted joins or leaves its owner's
// assignment as its change is applied.
type Index struct {
	cfg  IndexConfig
	scan tcs.Scanner
	log  *slog.Logger

	mu       sync.Mutex
	buckets  [Buckets]map[string]struct{}
	loaded   bool
	changed  chan struct{} // closed and replaced at every change
	pending  map[string]struct{}
	rescan   bool
	wake     chan struct{}
	loadedCh chan struct{}
}

// NewIndex returns an empty Index; Run fills it.
func NewIndex(cfg IndexConfig) (*Index, error) {
	sc, ok := cfg.Replica.(tcs.Scanner)
	if !ok {
		return nil, fmt.Errorf("work index: the replica (%T) cannot be scanned", cfg.Replica)
	}
	if cfg.Rescan <= 0 {
		cfg.Rescan = DefaultRescan
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	x := &Index{cfg: cfg, scan: sc, log: log, changed: make(chan struct{}), pending: map[string]struct{}{},
		wake: make(chan struct{}, 1), loadedCh: make(chan struct{})}
	for b := range x.buckets {
		x.buckets[b] = map[string]struct{}{}
	}
	return x, nil
}

// Loaded is closed once the first scan of the replica is done.
func (x *Index) Loaded() <-chan struct{} { return x.loadedCh }

// Changed returns a channel closed at the next change of the index.
func (x *Index) Changed() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.changed
}

// Tenants returns the ACTIVE tenants of bucket b, sorted.
func (x *Index) Tenants(b int) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, 0, len(x.buckets[b]))
	for id := range x.buckets[b] {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Count returns the number of ACTIVE tenants of bucket b: its weight in
// the balance.
func (x *Index) Count(b int) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.buckets[b])
}

// Active reports whether tenant id is ACTIVE in the index.
func (x *Index) Active(id string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	_, ok := x.buckets[Bucket(id)][id]
	return ok
}

// Len returns the number of ACTIVE tenants.
func (x *Index) Len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := 0
	for _, m := range x.buckets {
		n += len(m)
	}
	return n
}

// Invalidated queues the tenant an invalidation names to be re-read.
// Heartbeats are ignored. It never blocks.
func (x *Index) Invalidated(inv tcs.Invalidation) {
	if inv.TenantID == "" {
		return
	}
	x.mu.Lock()
	if len(x.pending) < maxPending {
		x.pending[inv.TenantID] = struct{}{}
	} else {
		x.rescan = true
	}
	x.mu.Unlock()
	x.poke()
}

// Gap says invalidations may have been lost: the index rescans.
func (x *Index) Gap() {
	x.mu.Lock()
	x.rescan = true
	x.mu.Unlock()
	x.poke()
}

func (x *Index) poke() {
	select {
	case x.wake <- struct{}{}:
	default:
	}
}

// Feed returns f with the index watching what it delivers: subscribe the
// lookup server to it instead of f.
func (x *Index) Feed(f tcs.Feed) tcs.Feed { return teeFeed{f, x} }

type teeFeed struct {
	tcs.Feed
	x *Index
}

func (t teeFeed) Subscribe(ctx context.Context, deliver func(tcs.Invalidation), gap func()) error {
	return t.Feed.Subscribe(ctx,
		func(inv tcs.Invalidation) { t.x.Invalidated(inv); deliver(inv) },
		func() { t.x.Gap(); gap() })
}

// Run scans the replica, then keeps the index up to date until ctx ends
// (then it returns nil). A failed read is logged and tried again.
func (x *Index) Run(ctx context.Context) error {
	x.Gap()
	t := time.NewTicker(x.cfg.Rescan)
	defer t.Stop()
	for {
		x.mu.Lock()
		rescan, pending := x.rescan, x.pending
		x.rescan, x.pending = false, map[string]struct{}{}
		x.mu.Unlock()
		if rescan {
			if err := x.load(ctx); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				x.log.Warn("reading the replica for the work pools failed; trying again", "err", err)
				x.Gap()
				if !sleep(ctx, time.Second) {
					return nil
				}
				continue
			}
		} else {
			for id := range pending {
				if err := x.refresh(ctx, id); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					x.log.Warn("re-reading a tenant for the work pools failed; rescanning", "tenant", id, "err", err)
					x.Gap()
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-x.wake:
		case <-t.C:
			x.Gap()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// load reads the whole replica and replaces the index.
func (x *Index) load(ctx context.Context) error {
	var fresh [Buckets]map[string]struct{}
	for b := range fresh {
		fresh[b] = map[string]struct{}{}
	}
	cursor := ""
	for {
		docs, next, err := x.scan.ScanDocs(ctx, cursor, 0)
		if err != nil {
			return fmt.Errorf("scan replica: %w", err)
		}
		for _, d := range docs {
			if d.Status == tenant.StatusActive {
				fresh[Bucket(d.ID)][d.ID] = struct{}{}
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	x.mu.Lock()
	x.buckets = fresh
	first := !x.loaded
	x.loaded = true
	x.changedLocked()
	x.mu.Unlock()
	if first {
		close(x.loadedCh)
	}
	return nil
}

// refresh re-reads tenant id.
func (x *Index) refresh(ctx context.Context, id string) error {
	t, err := x.cfg.Replica.GetTenant(ctx, id)
	active := false
	switch {
	case err == nil:
		active = t.Status == tenant.StatusActive
	case isNotFound(err):
	default:
		return err
	}
	x.Set(id, active)
	return nil
}

func isNotFound(err error) bool {
	var te *tenant.Error
	return errors.As(err, &te) && te.Code == tenant.NotFound
}

// Set records whether tenant id is ACTIVE (for the index's own updates and
// for tests).
func (x *Index) Set(id string, active bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.buckets[Bucket(id)]
	if _, ok := m[id]; ok == active {
		return
	}
	if active {
		m[id] = struct{}{}
	} else {
		delete(m, id)
	}
	x.changedLocked()
}

func (x *Index) changedLocked() {
	close(x.changed)
	x.changed = make(chan struct{})
}
