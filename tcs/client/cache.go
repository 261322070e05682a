package client

import (
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// cache is the client's hostname → answer cache.
//
// Layout. Entries live in 2^k shards, each an open-addressed hash table
// (see table) that readers search without taking a lock or writing
// anything: a hit is one hash, a few atomic loads and a string compare, with
// no allocation, and readers on two cores never bounce a cache line between
// them (a read lock's counter would, on every hit; a single lock far worse).
// Writers take their shard's mutex. The cached *tenant.Tenant is shared by
// every hit and must not be modified (see Client.Lookup).
//
// Bound. Each shard holds at most size/shards entries, plus 10% so that
// uneven hashing does not evict before size entries are held; inserting into a full
// shard evicts an entry picked at random (Go's randomised map iteration),
// which for the skewed popularity of hostnames keeps a hit ratio close to
// LRU's without LRU's write on every hit.
//
// Freshness. An entry is fresh while younger (counted from when its region
// read it) than its TTL, and, while the Watch stream is down, than the
// disconnected TTL; a Resync expires every entry at once by bumping a
// generation. An expired entry is kept for stale-if-error until max-stale.
// An invalidation deletes the entries it names (unless already as new), so
// an invalidated answer is never served, not even stale.
//
// No stale fill. Every fill takes a ticket (the invalidation sequence number
// and the generation) before it asks a region; its answer is installed only
// if no invalidation since the ticket says it is older, and with the ticket's
// generation (so a fill that raced with a Resync is installed already
// expired). Invalidations are remembered for window for that purpose.
type cache struct {
	seed     maphash.Seed
	shards   []shard
	mask     uint64
	perShard int
	epoch    time.Time
	now      func() time.Time

	ttl, negTTL, maxStale, discTTL int64 // nanoseconds

	// flags is the generation (bumped by each Resync) times two, plus one
	// while the Watch stream is up: one atomic load tells a hit both.
	flags atomic.Uint64
	// coarse is the clock, updated every millisecond by tick when the
	// clock is time.Now: reading an atomic costs a hit ~1 ns where
	// time.Now costs ~30 ns (kvm-clock).
	coarse  atomic.Int64
	ticking bool

	mu        sync.Mutex // serialises installs and invalidations
	seq       uint64     // invalidations so far; under mu
	forgotten uint64     // highest seq forgotten before its window ended
	hosts     map[string]mark
	tenants   map[string]mark
	order     []markRef
	window    int64
	maxMarks  int
}

type shard struct {
	mu   sync.Mutex // writers; readers take no lock
	tab  atomic.Pointer[table]
	live int      // items in tab; under mu
	used int      // non-nil slots in tab (items and tombstones); under mu
	_    [32]byte // keep neighbouring shards off one cache line
}

// table is an open-addressed hash table (linear probing) that readers
// search without a lock: its slots are atomic pointers to immutable items,
// so a reader sees each slot either before or after a writer's store. A
// writer (under the shard's lock) stores new items, replaces deleted ones
// by the tombstone, and, when fewer than a quarter of the slots are left
// nil, builds a new table and swaps it in; the old one is never written
// again, so readers still on it finish safely.
type table struct {
	slots []atomic.Pointer[item]
	mask  uint64
}

type item struct {
	hash uint64
	key  string
	e    entry
}

// tombstone fills the slot of a deleted item, so that probes go past it.
var tombstone = &item{}

func newTable(size int) *table {
	return &table{slots: make([]atomic.Pointer[item], size), mask: uint64(size - 1)}
}

// find returns the item of key, or nil.
func (t *table) find(key string, hash uint64) *item {
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return nil
		}
		if it.hash == hash && it.key == key && it != tombstone {
			return it
		}
	}
}

// slot returns the slot index of key, or -1.
func (t *table) slot(key string, hash uint64) int {
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			return -1
		}
		if it.hash == hash && it.key == key && it != tombstone {
			return int(i)
		}
	}
}

// load returns the entry of key.
func (sh *shard) load(key string, hash uint64) (entry, bool) {
	if it := sh.tab.Load().find(key, hash); it != nil {
		return it.e, true
	}
	return entry{}, false
}

// store sets the entry of key, evicting a random other entry if the shard
// holds limit already. sh.mu must be held.
func (sh *shard) store(key string, hash uint64, e entry, limit int) {
	t := sh.tab.Load()
	free := -1
	for i := hash & t.mask; ; i = (i + 1) & t.mask {
		it := t.slots[i].Load()
		if it == nil {
			if free < 0 {
				free = int(i)
			}
			break
		}
		if it == tombstone {
			if free < 0 {
				free = int(i)
			}
			continue
		}
		if it.hash == hash && it.key == key {
			t.slots[i].Store(&item{hash: hash, key: key, e: e})
			return
		}
	}
	if sh.live >= limit {
		sh.evict(t)
	}
	if t.slots[free].Load() == nil {
		sh.used++
	}
	t.slots[free].Store(&item{hash: hash, key: key, e: e})
	sh.live++
	if sh.used*4 > len(t.slots)*3 {
		sh.rebuild()
	}
}

// evict deletes an entry picked at random. sh.mu must be held.
func (sh *shard) evict(t *table) {
	start := rand.Uint64()
	for n := uint64(0); n <= t.mask; n++ {
		i := (start + n) & t.mask
		if it := t.slots[i].Load(); it != nil && it != tombstone {
			t.slots[i].Store(tombstone)
			sh.live--
			return
		}
	}
}

// delete deletes slot i of the current table. sh.mu must be held.
func (sh *shard) delete(i int) {
	sh.tab.Load().slots[i].Store(tombstone)
	sh.live--
}

// rebuild swaps in a new table holding the live items, with at least half
// of its slots nil. sh.mu must be held.
func (sh *shard) rebuild() {
	old := sh.tab.Load()
	size := 16
	for size < 2*sh.live+2 {
		size *= 2
	}
	t := newTable(size)
	for i := range old.slots {
		it := old.slots[i].Load()
		if it == nil || it == tombstone {
			continue
		}
		j := it.hash & t.mask
		for t.slots[j].Load() != nil {
			j = (j + 1) & t.mask
		}
		t.slots[j].Store(it)
	}
	sh.used = sh.live
	sh.tab.Store(t)
}

// entry is one cached answer. A nil t is a negative answer (no tenant owns
// the hostname).
type entry struct {
	t      *tenant.Tenant
	readAt int64 // cache clock, when the region read it
	gen    uint64
	region string
}

// mark remembers one invalidation of a hostname or a tenant.
type mark struct {
	seq      uint64
	tenantID string
	version  int64
	at       int64
}

type markRef struct {
	host bool
	key  string
	seq  uint64
	at   int64
}

// ticket is taken before a fill asks a region.
type ticket struct {
	seq uint64
	gen uint64
}

// state is what the cache knows of a hostname.
type state int

const (
	absent  state = iota
	fresh         // serve it
	expired       // ask a region; serve it only if every region fails (and it is within max-stale)
)

type cacheConfig struct {
	size                           int
	ttl, negTTL, maxStale, discTTL time.Duration
	window                         time.Duration
	now                            func() time.Time
}

func newCache(cfg cacheConfig) *cache {
	n := 256
	for n > 1 && cfg.size/n < 64 {
		n /= 2
	}
	// Hostnames spread over shards a little unevenly (a standard
	// deviation of about 1.6% of a shard at a million entries): 10% of room
	// keeps a cache of size entries from evicting before it holds them.
	per := (cfg.size + n - 1) / n
	if n > 1 {
		per += per / 10
	}
	c := &cache{
		seed:     maphash.MakeSeed(),
		shards:   make([]shard, n),
		mask:     uint64(n - 1),
		perShard: per,
		now:      cfg.now,
		epoch:    cfg.now(),
		ttl:      int64(cfg.ttl),
		negTTL:   int64(cfg.negTTL),
		maxStale: int64(cfg.maxStale),
		discTTL:  int64(cfg.discTTL),
		hosts:    make(map[string]mark),
		tenants:  make(map[string]mark),
		window:   int64(cfg.window),
		maxMarks: 100_000,
	}
	for i := range c.shards {
		c.shards[i].tab.Store(newTable(16))
	}
	return c
}

// clock returns the cache's time in nanoseconds since it was made
// (monotonic when the clock is time.Now).
func (c *cache) clock() int64 { return int64(c.now().Sub(c.epoch)) }

// fast returns the clock to the millisecond, cheaply.
func (c *cache) fast() int64 {
	if c.ticking {
		return c.coarse.Load()
	}
	return c.clock()
}

// tick keeps the coarse clock running until done is closed.
func (c *cache) tick(done <-chan struct{}) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			c.coarse.Store(c.clock())
		}
	}
}

func (c *cache) gen() uint64 { return c.flags.Load() >> 1 }

func (c *cache) watching() bool { return c.flags.Load()&1 == 1 }

// setWatching records whether the Watch stream is up, and reports whether
// that changed.
func (c *cache) setWatching(up bool) bool {
	for {
		old := c.flags.Load()
		nu := old &^ 1
		if up {
			nu |= 1
		}
		if old == nu {
			return false
		}
		if c.flags.CompareAndSwap(old, nu) {
			return true
		}
	}
}

// shard returns the shard of key and the key's hash: its high bits pick the
// shard, its low bits the slot.
func (c *cache) shard(key string) (*shard, uint64) {
	h := maphash.String(c.seed, key)
	return &c.shards[(h>>56)&c.mask], h
}

// get returns the entry of hostname h and its state at now.
func (c *cache) get(h string, now int64) (entry, state) {
	if c.perShard <= 0 {
		return entry{}, absent
	}
	sh, hash := c.shard(h)
	e, ok := sh.load(h, hash)
	if !ok {
		return entry{}, absent
	}
	age := now - e.readAt
	ttl := c.ttl
	if e.t == nil {
		ttl = c.negTTL
	}
	f := c.flags.Load()
	if age < ttl && e.gen == f>>1 && (age < c.discTTL || f&1 == 1) {
		return e, fresh
	}
	return e, expired
}

// staleOK reports whether e may be served when every region fails.
func (c *cache) staleOK(e entry, now int64) bool {
	return now-e.readAt < c.maxStale
}

func (c *cache) begin() ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ticket{seq: c.seq, gen: c.gen()}
}

// put installs e for hostname h unless an invalidation since tk says it is
// out of date; it reports whether it did.
func (c *cache) put(h string, e entry, tk ticket) bool {
	if c.perShard <= 0 {
		return false
	}
	if e.t == nil && c.negTTL <= 0 {
		return false
	}
	e.gen = tk.gen
	c.mu.Lock()
	defer c.mu.Unlock()
	if tk.seq < c.forgotten {
		return false // an invalidation it raced with may have been forgotten
	}
	if e.t != nil {
		if m, ok := c.tenants[e.t.ID]; ok && m.version > e.t.Version {
			return false
		}
	}
	if m, ok := c.hosts[h]; ok && m.seq > tk.seq && !e.asNewAs(m.tenantID, m.version) {
		return false
	}
	sh, hash := c.shard(h)
	sh.mu.Lock()
	sh.store(h, hash, e, c.perShard)
	sh.mu.Unlock()
	return true
}

// asNewAs reports whether e is tenant id at version or newer.
func (e entry) asNewAs(id string, version int64) bool {
	return e.t != nil && e.t.ID == id && e.t.Version >= version
}

// invalidate applies an invalidation by version (tcs.proto, Invalidation):
// each named hostname's entry is dropped unless it is already tenant id at
// version or newer, and so is every entry of the tenant below version that
// the cached documents of those hostnames lead to.
func (c *cache) invalidate(id string, version int64, hostnames []string) {
	now := c.clock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	for _, h := range hostnames {
		c.hosts[h] = mark{seq: c.seq, tenantID: id, version: version, at: now}
		c.order = append(c.order, markRef{host: true, key: h, seq: c.seq, at: now})
	}
	if m, ok := c.tenants[id]; !ok || m.version < version {
		c.tenants[id] = mark{seq: c.seq, tenantID: id, version: version, at: now}
		c.order = append(c.order, markRef{key: id, seq: c.seq, at: now})
	}
	c.prune(now)

	var more []string
	for _, h := range hostnames {
		if e, ok := c.drop(h, id, version); ok && e.t != nil && e.t.ID == id {
			more = append(more, e.t.Hostnames...)
		}
	}
	for _, h := range more {
		sh, hash := c.shard(h)
		sh.mu.Lock()
		if i := sh.tab.Load().slot(h, hash); i >= 0 {
			if e := sh.tab.Load().slots[i].Load().e; e.t != nil && e.t.ID == id && e.t.Version < version {
				sh.delete(i)
			}
		}
		sh.mu.Unlock()
	}
}

// drop deletes h's entry unless it is tenant id at version or newer, and
// returns what was there.
func (c *cache) drop(h, id string, version int64) (entry, bool) {
	sh, hash := c.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := sh.tab.Load().slot(h, hash)
	if i < 0 {
		return entry{}, false
	}
	e := sh.tab.Load().slots[i].Load().e
	if !e.asNewAs(id, version) {
		sh.delete(i)
	}
	return e, true
}

// prune forgets invalidations older than the window, or the oldest beyond
// maxMarks. c.mu must be held.
func (c *cache) prune(now int64) {
	i := 0
	for ; i < len(c.order); i++ {
		r := c.order[i]
		if now-r.at < c.window && len(c.order)-i <= c.maxMarks {
			break
		}
		if now-r.at < c.window {
			c.forgotten = max(c.forgotten, r.seq)
		}
		m := c.tenants
		if r.host {
			m = c.hosts
		}
		if cur, ok := m[r.key]; ok && cur.seq == r.seq {
			delete(m, r.key)
		}
	}
	c.order = c.order[i:] // append reallocates (keeping only these) when it fills up
}

// resync expires every entry: invalidations may have been missed.
func (c *cache) resync() {
	c.mu.Lock()
	c.flags.Add(2)
	c.mu.Unlock()
}

// len returns the number of entries.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.live
		sh.mu.Unlock()
	}
	return n
}
