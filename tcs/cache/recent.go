package cache

import (
	"sync"

	"github.com/tcs-dev/tcs/tcs"
)

// mark is what the cache remembers of the newest invalidation that named a
// hostname (or, in recent.byTenant, of a tenant's highest invalidated
// version).
type mark struct {
	tenantID string
	version  int64
	seq      uint64
	// hostnames are the invalidation's (shared with its record): those of
	// the tenant at that version, and those it released.
	hostnames []string
}

// record is one remembered invalidation, queued in arrival order so that it
// can be forgotten when it leaves the window.
type record struct {
	seq       uint64
	at        int64 // unix nanoseconds
	tenantID  string
	version   int64
	hostnames []string
}

// recent remembers the invalidations of a bounded window (invariant 4). A
// fill notes the sequence number current when it starts; at install it asks
// recent whether an invalidation that arrived since then forbids what it
// read. The window must outlast any fill; a fill that began before a
// remembered invalidation was forgotten cannot be checked, so it is not
// installed (forgotten tracks that).
type recent struct {
	window int64 // nanoseconds
	limit  int   // hostnames remembered

	mu        sync.RWMutex
	seq       uint64 // of the newest invalidation
	forgotten uint64 // seq of the newest invalidation forgotten
	byHost    map[string]mark
	// byTenant holds each tenant's highest invalidated version (a mark):
	// no entry of that tenant below it may be served or installed (the
	// second rule of the Invalidation comment in tcs.proto, enforced
	// lazily). Every cache hit reads it, so it is a sync.Map, whose reads
	// take no lock and write no shared memory (a read lock would, and its
	// cache line would bounce between cores on every hit); it is written
	// only under mu.
	byTenant sync.Map
	queue    []record // queue[head:] are remembered, oldest first
	head     int
	hosts    int // hostnames in queue[head:]
}

func newRecent(window int64, limit int) *recent {
	return &recent{
		window: window,
		limit:  limit,
		byHost: make(map[string]mark),
	}
}

// current returns the sequence number of the newest invalidation.
func (r *recent) current() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.seq
}

// add remembers inv, received at now, and forgets what has left the window.
func (r *recent) add(inv tcs.Invalidation, now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	m := mark{tenantID: inv.TenantID, version: inv.Version, seq: r.seq, hostnames: inv.Hostnames}
	for _, h := range inv.Hostnames {
		r.byHost[h] = m
	}
	if old, ok := r.tenantMark(inv.TenantID); !ok || inv.Version >= old.version {
		r.byTenant.Store(inv.TenantID, m)
	}
	r.queue = append(r.queue, record{
		seq:       r.seq,
		at:        now,
		tenantID:  inv.TenantID,
		version:   inv.Version,
		hostnames: inv.Hostnames,
	})
	r.hosts += len(inv.Hostnames)

	for r.head < len(r.queue)-1 { // always keep the newest
		old := &r.queue[r.head]
		if now-old.at <= r.window && r.hosts <= r.limit {
			break
		}
		r.forget(old)
		*old = record{}
		r.head++
	}
	if r.head > len(r.queue)/2 && r.head > 64 {
		n := copy(r.queue, r.queue[r.head:])
		clear(r.queue[n:])
		r.queue = r.queue[:n]
		r.head = 0
	}
}

func (r *recent) forget(rec *record) {
	for _, h := range rec.hostnames {
		if r.byHost[h].seq == rec.seq {
			delete(r.byHost, h)
		}
	}
	if m, _ := r.tenantMark(rec.tenantID); m.seq == rec.seq {
		r.byTenant.Delete(rec.tenantID)
	}
	r.hosts -= len(rec.hostnames)
	r.forgotten = rec.seq
}

// superseded reports whether a cached entry of tenantID at version is older
// than an invalidation of that tenant still remembered.
func (r *recent) superseded(tenantID string, version int64) bool {
	m, ok := r.tenantMark(tenantID)
	return ok && version < m.version
}

// hostMark returns the newest remembered invalidation naming hostname.
func (r *recent) hostMark(hostname string) (mark, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	m, ok := r.byHost[hostname]
	return m, ok
}

func (r *recent) tenantMark(tenantID string) (mark, bool) {
	v, ok := r.byTenant.Load(tenantID)
	if !ok {
		return mark{}, false
	}
	return v.(mark), true
}

// admits reports whether a fill of hostname that started when the newest
// invalidation was number since may install e. It may not if:
//
//   - an invalidation that the fill cannot check has been forgotten;
//   - an invalidation naming hostname arrived after the fill started, and e
//     is not that tenant at that version or newer (the read may have
//     happened before the change: a negative read, or another tenant's, can
//     never be told apart from an old one);
//   - e is older than any remembered invalidation of its own tenant,
//     whenever that arrived (a replica read that lags behind the
//     broadcast).
func (r *recent) admits(hostname string, e *entry, since uint64) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if since < r.forgotten {
		return false
	}
	if m, ok := r.byHost[hostname]; ok {
		sameTenant := !e.negative() && m.tenantID == e.tenantID
		if m.seq > since && !(sameTenant && e.version >= m.version) {
			return false
		}
	}
	if !e.negative() {
		if m, ok := r.tenantMark(e.tenantID); ok && e.version < m.version {
			return false
		}
	}
	return true
}

// size returns the number of hostnames remembered.
func (r *recent) size() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.hosts
}
