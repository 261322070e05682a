package cache

import "github.com/tcs-dev/tcs/catalog/tenant"

// Ticket exposes the start of a fill, so that tests can interleave the steps
// of fills and invalidations exactly.
type Ticket = ticket

// Begin notes the start of a fill, as fill does before it reads.
func (c *Cache) Begin() Ticket { return c.begin() }

// Finish installs what a fill begun with tk read (nil: NotFound), as fill
// does after its read, and reports whether it was installed.
func (c *Cache) Finish(hostname string, t *tenant.Tenant, tk Ticket) bool {
	if t == nil {
		return c.install(hostname, &entry{readAt: tk.at, gen: tk.gen}, tk)
	}
	e, err := encode(t, tk)
	if err != nil {
		panic(err)
	}
	return c.install(hostname, &e, tk)
}

// Put installs t under hostname as a fill starting now would.
func (c *Cache) Put(hostname string, t *tenant.Tenant) bool {
	return c.Finish(hostname, t, c.begin())
}

// Fresh reports the fresh entry of hostname, positive or negative, without
// reading the replica or counting a hit.
func (c *Cache) Fresh(hostname string) (tenantID string, version int64, negative, ok bool) {
	now := c.opts.Now().UnixNano()
	sh := c.shard(hostname)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := c.getLocked(sh, hostname)
	if !ok || !c.fresh(&e, now) {
		return "", 0, false, false
	}
	return e.tenantID, e.version, e.negative(), true
}

// Kept reports the entry of hostname as the cache holds it, fresh or not
// (what a lookup gets stale when the replica fails), without reading the
// replica or counting a hit.
func (c *Cache) Kept(hostname string) (tenantID string, version int64, negative, outdated, ok bool) {
	sh := c.shard(hostname)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := c.getLocked(sh, hostname)
	if !ok {
		return "", 0, false, false, false
	}
	return e.tenantID, e.version, e.negative(), e.outdated, true
}

// ProbeHostnameForTest is a hostname no tenant owns.
const ProbeHostnameForTest = "probe.invalid"
