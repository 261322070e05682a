package cache_test

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/cache"
)

// answer is what the replica says about one hostname at one moment.
type answer struct {
	tenantID string // "" for NotFound
	version  int64
}

// model is a replica of two tenants and two hostnames, changed one event
// at a time, with the invalidations of those changes delivered later, in
// order, or lost (then the feed reports a gap).
type model struct {
	owner   map[string]string // hostname → tenant id, "" for none
	version map[string]int64  // tenant id → version
	// history[k] holds every hostname's answer after k changes.
	history []map[string]answer
	pending []stamped
	// delivered[h] is the change index of the newest delivered
	// invalidation naming h; byTenant the same per tenant.
	delivered map[string]int
	byTenant  map[string]int
}

type stamped struct {
	inv   tcs.Invalidation
	index int
}

var (
	propHosts   = []string{"a.example.com", "b.example.com"}
	propTenants = []string{"acme", "zeta"}
)

func newModel() *model {
	m := &model{
		owner:     map[string]string{},
		version:   map[string]int64{},
		delivered: map[string]int{},
		byTenant:  map[string]int{},
	}
	m.history = append(m.history, m.snapshot())
	return m
}

func (m *model) snapshot() map[string]answer {
	s := map[string]answer{}
	for _, h := range propHosts {
		if o := m.owner[h]; o != "" {
			s[h] = answer{o, m.version[o]}
		} else {
			s[h] = answer{}
		}
	}
	return s
}

func (m *model) now() int { return len(m.history) - 1 }

// change applies one change of tenant id that also releases the hostnames in
// released, and queues its invalidation.
func (m *model) change(id string, released ...string) {
	m.version[id]++
	m.history = append(m.history, m.snapshot())
	names := slices.Clone(released)
	for _, h := range propHosts {
		if m.owner[h] == id {
			names = append(names, h)
		}
	}
	m.pending = append(m.pending, stamped{
		inv:   tcs.Invalidation{TenantID: id, Version: m.version[id], Hostnames: names},
		index: m.now(),
	})
}

type propFill struct {
	hostname string
	ticket   cache.Ticket
	read     *answer
}

// TestNoStaleFillProperty: whatever the interleaving of changes, deliveries,
// losses, gaps, and the three steps of fills (begin, replica read, install),
// a fresh entry is always an answer the replica gave at or after the newest
// delivered invalidation that names its hostname or its tenant (invariant 4
// of docs/architecture.md).
func TestNoStaleFillProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(rt *rapid.T) {
		c, _, _ := newCache(t, cache.Options{
			MaxRemembered: rapid.SampledFrom([]int{2, 1000}).Draw(rt, "maxRemembered"),
		})
		m := newModel()
		var fills []*propFill

		rt.Repeat(map[string]func(*rapid.T){
			// A change in the replica: a hostname changes owner (claimed or
			// released), or a tenant changes otherwise.
			"change": func(rt *rapid.T) {
				if rapid.Bool().Draw(rt, "move") {
					h := rapid.SampledFrom(propHosts).Draw(rt, "hostname")
					if id := m.owner[h]; id != "" {
						m.owner[h] = ""
						m.change(id, h)
						return
					}
					id := rapid.SampledFrom(propTenants).Draw(rt, "tenant")
					m.owner[h] = id
					m.change(id)
					return
				}
				m.change(rapid.SampledFrom(propTenants).Draw(rt, "tenant"))
			},
			// The next invalidation is delivered, or (rarely) lost, and the
			// feed reports a gap; or (rarely) a gap without a loss.
			"deliver": func(rt *rapid.T) {
				switch rapid.IntRange(0, 9).Draw(rt, "kind") {
				case 0:
					c.Gap()
					return
				case 1:
					if len(m.pending) > 0 {
						m.pending = m.pending[1:]
						c.Gap()
					}
					return
				}
				if len(m.pending) == 0 {
					rt.Skip("nothing pending")
				}
				p := m.pending[0]
				m.pending = m.pending[1:]
				c.Invalidate(p.inv)
				for _, h := range p.inv.Hostnames {
					m.delivered[h] = p.index
				}
				m.byTenant[p.inv.TenantID] = p.index
			},
			"begin": func(rt *rapid.T) {
				h := rapid.SampledFrom(propHosts).Draw(rt, "hostname")
				fills = append(fills, &propFill{hostname: h, ticket: c.Begin()})
			},
			// The replica read of a fill, then its install: a fill not yet
			// read is read; one read is installed.
			"step": func(rt *rapid.T) {
				if len(fills) == 0 {
					rt.Skip("no fill")
				}
				i := rapid.IntRange(0, len(fills)-1).Draw(rt, "fill")
				f := fills[i]
				if f.read == nil {
					a := m.history[m.now()][f.hostname]
					f.read = &a
					return
				}
				fills = slices.Delete(fills, i, i+1)
				if f.read.tenantID == "" {
					c.Finish(f.hostname, nil, f.ticket)
				} else {
					c.Finish(f.hostname, makeTenant(f.read.tenantID, f.read.version, f.hostname), f.ticket)
				}
			},
			"": func(rt *rapid.T) {
				for _, h := range propHosts {
					id, v, negative, ok := c.Fresh(h)
					if !ok {
						continue
					}
					got := answer{id, v}
					if negative {
						got = answer{}
					}
					since, named := m.delivered[h]
					if !negative {
						if k, ok := m.byTenant[id]; ok && (!named || k > since) {
							since, named = k, true
						}
					}
					if !named {
						continue
					}
					if !slices.ContainsFunc(m.history[since:], func(s map[string]answer) bool { return s[h] == got }) {
						rt.Fatalf("%s is cached as %s, which the replica never answered at or after change %d (the newest delivered invalidation naming it or its tenant): history %s",
							h, fmtAnswer(got), since, fmtHistory(m.history, h))
					}
				}
			},
		})
	})
}

func fmtAnswer(a answer) string {
	if a.tenantID == "" {
		return "NotFound"
	}
	return fmt.Sprintf("%s@%d", a.tenantID, a.version)
}

func fmtHistory(h []map[string]answer, host string) string {
	var out []string
	for k, s := range h {
		out = append(out, fmt.Sprintf("%d:%s", k, fmtAnswer(s[host])))
	}
	return fmt.Sprint(out)
}
