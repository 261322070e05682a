package client

import (
	"slices"
	"strings"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Monotonic reads.
//
// The cache remembers, for the tenants most recently answered by a region
// (an LRU of WithMonotonicReads tenants, DefaultMonotonicTenants), the
// newest version of the tenant's document the client has returned or
// cached (known). Three rules keep every answer at or above it:
//
//   - An answer from a region is accepted (accept, under the cache's mutex)
//     only if it is not older than the remembered version; accepting it
//     raises the remembered version and drops every cached entry of the
//     tenant older than it (reconcile) before anyone is given the answer.
//     So a cache hit, which reads no memory but its slot, never finds an
//     older version than one returned: hits stay as they were (no lock, no
//     allocation, no extra lookup).
//   - put installs nothing older than the remembered version, so a fill
//     that raced with a newer one does not put the older answer back.
//   - Every answer that is not a hit is checked once more as it is handed
//     to each caller (Client.notOlder): a flight that landed just before a
//     newer version was accepted for another hostname gives that newer
//     version (if it still lists the hostname), not its own. A BatchLookup
//     with misses checks its hits so too, after its fills.
//
// To find a tenant's cached entries when its version rises, without an
// index from tenants to hostnames, reconcile follows the hostnames of the
// documents involved: the new one, the one it replaces (and the hostnames
// it was cached under that it does not list, extra), and those of every
// older document it finds on the way. Every entry of a remembered tenant was
// installed at its remembered version under a hostname that document lists
// or extra holds, so none is missed.
//
// A tenant dropped from the LRU (more than that many other tenants answered
// by a region since it last was) is forgotten: the guarantee lapses for it.
// When it is remembered again, reconcile still looks at the cache entries
// under the hostnames of the answer that brings it back, and takes the
// newest version it finds there as remembered.

// known is what the client remembers of one tenant: the newest version
// returned or cached. It holds the document serialised, and its hostnames
// in one string, so that remembering many tenants costs the garbage
// collector a few small objects each, not a decoded document's dozens.
type known struct {
	version int64
	doc     []byte // the document, serialised (encodeDoc)
	hosts   string // its hostnames, each followed by '\n'
	readAt  int64  // cache clock, when a region last read that version
	region  string // which region that was
	// extra are the hostnames the tenant was cached under at this version
	// that its document does not list (a region may answer a hostname with
	// a document that does not list it while a hostname move is half
	// applied). At most maxExtra: beyond that, such a hostname is returned
	// but not cached.
	extra []string
}

const maxExtra = 16

// newKnownOf returns what to remember of t, read at readAt by region; doc
// is t serialised, or nil to serialise it. It returns nil if t does not
// serialise (then it is not remembered: the guarantee lapses for it).
func newKnownOf(t *tenant.Tenant, doc []byte, readAt int64, region string) *known {
	if doc == nil {
		var err error
		if doc, err = encodeDoc(t); err != nil {
			return nil
		}
	}
	var hosts strings.Builder
	for _, h := range t.Hostnames {
		hosts.WriteString(h)
		hosts.WriteByte('\n')
	}
	return &known{version: t.Version, doc: doc, hosts: hosts.String(), readAt: readAt, region: region}
}

// tenant returns the remembered document, decoded.
func (k *known) tenant() *tenant.Tenant { return decodeDoc(k.doc) }

// hostnames returns the hostnames the remembered document lists.
func (k *known) hostnames() []string {
	if k.hosts == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(k.hosts, "\n"), "\n")
}

// lists reports whether the tenant at its remembered version owned h, as
// far as the client knows.
func (k *known) lists(h string) bool {
	for rest := k.hosts; rest != ""; {
		var one string
		one, rest, _ = strings.Cut(rest, "\n")
		if one == h {
			return true
		}
	}
	return slices.Contains(k.extra, h)
}

// newKnown returns the memory of tenants for monotonic reads, or nil (off)
// for size <= 0.
func newKnown(size int) *simplelru.LRU[string, *known] {
	if size <= 0 {
		return nil
	}
	l, err := simplelru.NewLRU[string, *known](size, nil)
	if err != nil {
		panic(err) // only for size <= 0
	}
	return l
}

// accept reports whether e, a region's answer for hostname h, may be
// returned: not if the client has returned or cached a newer version of its
// tenant. If it may, the tenant's remembered version is raised to it first
// (see raise).
func (c *cache) accept(h string, e entry) bool {
	if c.known == nil || e.t == nil {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.raise(h, e)
}

// raise makes e, the answer for hostname h, the newest version of its
// tenant that the client has returned, and drops the cached entries of the
// tenant older than it; it reports false, and only learns, if a newer one
// was returned or is cached. c.mu must be held.
func (c *cache) raise(h string, e entry) bool {
	if c.known == nil || e.t == nil {
		return true
	}
	t := e.t
	k, ok := c.known.Get(t.ID)
	switch {
	case ok && k.version > t.Version:
		return false
	case ok && k.version == t.Version:
		if e.readAt > k.readAt {
			k.readAt, k.region = e.readAt, e.region
		}
		if !k.lists(h) && len(k.extra) < maxExtra {
			k.extra = append(k.extra, strings.Clone(h))
		}
		return true
	}
	roots := [][]string{t.Hostnames, {h}}
	if ok {
		roots = append(roots, k.hostnames(), k.extra)
	}
	if newer := c.reconcile(t, roots...); newer != nil {
		c.known.Add(t.ID, newer)
		return false
	}
	nk := newKnownOf(t, nil, e.readAt, e.region)
	if nk == nil {
		return true
	}
	if !slices.Contains(t.Hostnames, h) {
		nk.extra = []string{strings.Clone(h)}
	}
	c.known.Add(t.ID, nk)
	return true
}

// reconcile looks at the cached entries of t's tenant under the hostnames
// of roots and, in turn, under the hostnames of every document of the
// tenant found there. If one is newer than t it returns the newest, as what
// to remember, and drops those older than it; otherwise it drops those older
// than t and returns nil. c.mu must be held (so nothing is installed
// meanwhile).
func (c *cache) reconcile(t *tenant.Tenant, roots ...[]string) *known {
	var queue []string
	for _, r := range roots {
		queue = append(queue, r...)
	}
	seen := make(map[string]bool, len(queue))
	var held []string // hostnames whose entry holds the tenant
	var newest *known
	for len(queue) > 0 {
		h := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if seen[h] {
			continue
		}
		seen[h] = true
		r := c.lookup(h)
		if r.s == nil || r.s.seq == 0 {
			continue
		}
		st := r.tenant()
		if st.ID != t.ID {
			continue
		}
		held = append(held, h)
		if st.Version == t.Version {
			continue
		}
		queue = append(queue, st.Hostnames...)
		if st.Version > t.Version && (newest == nil || st.Version > newest.version) {
			// A copy: the table's bytes must not be kept alive.
			newest = newKnownOf(st, slices.Clone(r.t.docOf(r.s, r.w)), r.s.readAt, c.regionOf(r.w))
		}
	}
	floor := t.Version
	if newest != nil {
		floor = newest.version
	}
	for _, h := range held {
		sh, hash := c.shard(h)
		sh.mu.Lock()
		tab := sh.tab.Load()
		if i, w := tab.find(h, hash); i >= 0 {
			if old := sh.peek(tab, i, w); old != nil && old.ID == t.ID && old.Version < floor {
				sh.delete(i)
			}
		}
		sh.mu.Unlock()
	}
	return newest
}

// newer returns what the client remembers of t's tenant if that is a newer
// version than t.
func (c *cache) newer(t *tenant.Tenant) (known, bool) {
	if c.known == nil || t == nil {
		return known{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known.Peek(t.ID)
	if !ok || k.version <= t.Version {
		return known{}, false
	}
	return *k, true
}

// remembered returns, as an entry for hostname h, the newest version of
// tenant id the client has returned, if it lists h and its age at now is
// within the TTL or max-stale.
func (c *cache) remembered(h, id string, now int64) (entry, bool) {
	if c.known == nil {
		return entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known.Peek(id)
	if !ok || !k.lists(h) || now-k.readAt >= max(c.ttl, c.maxStale) {
		return entry{}, false
	}
	return entry{t: k.tenant(), readAt: k.readAt, region: k.region}, true
}

// released returns, as a NOT_FOUND entry for hostname h, what the client
// knows when the newest version of tenant id it has returned does not list
// h (the tenant released it), if that version's age at now is within the
// TTL or max-stale: when a region read that version, id no longer owned h.
func (c *cache) released(h, id string, now int64) (entry, bool) {
	if c.known == nil {
		return entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known.Peek(id)
	if !ok || k.lists(h) || now-k.readAt >= max(c.ttl, c.maxStale) {
		return entry{}, false
	}
	return entry{readAt: k.readAt, region: k.region}, true
}

// rememberedTenants returns how many tenants the memory holds.
func (c *cache) rememberedTenants() int {
	if c.known == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.known.Len()
}
