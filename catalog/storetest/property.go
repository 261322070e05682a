package storetest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Few ids and hostnames, so that random steps collide often: duplicate
// creates, taken hostnames, moves, re-creates after deletes.
var (
	propIDs   = []string{"ten-a", "ten-b", "ten-c", "ten-d"}
	propHosts = []string{"h0.example.com", "h1.example.com", "h2.example.com", "h3.example.com", "h4.example.com", "h5.example.com"}
)

// model is what the store should hold: the last document of every tenant
// ever written (tombstones included) and the owner of every held hostname.
type model struct {
	docs   map[string]*tenant.Tenant
	owners map[string]string
	writes int // committed writes, one outbox entry each
}

func (m *model) live(id string) *tenant.Tenant {
	if d := m.docs[id]; d != nil && !d.Deleted() {
		return d
	}
	return nil
}

// taken returns a hostname of hosts that a tenant other than id holds.
func (m *model) taken(id string, hosts []string) (string, bool) {
	for _, h := range hosts {
		if o, ok := m.owners[h]; ok && o != id {
			return h, true
		}
	}
	return "", false
}

func (m *model) commit(doc *tenant.Tenant) {
	if prev := m.docs[doc.ID]; prev != nil {
		for _, h := range prev.Hostnames {
			delete(m.owners, h)
		}
	}
	for _, h := range doc.Hostnames {
		m.owners[h] = doc.ID
	}
	m.docs[doc.ID] = doc
	m.writes++
}

// ignoreTime leaves the clock out of model comparisons.
var ignoreTime = cmpopts.IgnoreFields(tenant.Tenant{}, "UpdatedAt")

// testProperty runs random sequences of creates, updates, deletes and
// hostname moves against a store and the model, checking after each step
// that reads agree with the model and that replaying the outbox in order
// rebuilds the model's documents and hostname owners.
func testProperty(t *testing.T, newStore func(t *testing.T) catalog.Store) {
	rapid.Check(t, func(rt *rapid.T) {
		s := newStore(t)
		ctx := context.Background()
		m := &model{docs: map[string]*tenant.Tenant{}, owners: map[string]string{}}
		r := newReplica()
		drawHosts := func(rt *rapid.T, label string) []string {
			return rapid.SliceOfNDistinct(rapid.SampledFrom(propHosts), 1, 3, rapid.ID[string]).Draw(rt, label)
		}
		drawDoc := func(rt *rapid.T, id string) *tenant.Tenant {
			d := NewTenant(id, drawHosts(rt, "hostnames")...)
			if label := rapid.SampledFrom([]string{"", "x", "y"}).Draw(rt, "label"); label != "" {
				d.Labels = map[string]string{"k": label}
			}
			return d
		}
		// expect checks a write's outcome against the model's prediction and
		// commits the document on success.
		expect := func(rt *rapid.T, op string, got *tenant.Tenant, err error, wantCode tenant.Code, want *tenant.Tenant) {
			rt.Helper()
			if tenant.ErrorCode(err) != wantCode {
				rt.Fatalf("%s: error %v, want code %q", op, err, wantCode)
			}
			if err != nil {
				return
			}
			if !cmp.Equal(want, got, equateEmpty, ignoreTime) {
				rt.Fatalf("%s returned (-want +got):\n%s", op, cmp.Diff(want, got, equateEmpty, ignoreTime))
			}
			m.commit(want)
		}
		stamp := func(d *tenant.Tenant, version int64) *tenant.Tenant {
			c := d.Clone()
			c.Version, c.UpdatedBy = version, actor
			return c
		}

		rt.Repeat(map[string]func(*rapid.T){
			"create": func(rt *rapid.T) {
				in := drawDoc(rt, rapid.SampledFrom(propIDs).Draw(rt, "id"))
				got, err := s.Create(ctx, in.Clone(), actor)
				op := fmt.Sprintf("Create(%s %v)", in.ID, in.Hostnames)
				prev := m.docs[in.ID]
				switch _, taken := m.taken(in.ID, in.Hostnames); {
				case m.live(in.ID) != nil:
					expect(rt, op, got, err, tenant.AlreadyExists, nil)
				case taken:
					expect(rt, op, got, err, tenant.HostnameTaken, nil)
				case prev != nil:
					expect(rt, op, got, err, "", stamp(in, prev.Version+1))
				default:
					expect(rt, op, got, err, "", stamp(in, 1))
				}
			},
			"update": func(rt *rapid.T) {
				in := drawDoc(rt, rapid.SampledFrom(propIDs).Draw(rt, "id"))
				var stored int64
				if d := m.docs[in.ID]; d != nil {
					stored = d.Version
				}
				expected := stored + rapid.SampledFrom([]int64{0, 0, 0, -1, 1}).Draw(rt, "version offset")
				got, err := s.Update(ctx, in.Clone(), expected, actor)
				op := fmt.Sprintf("Update(%s %v, %d)", in.ID, in.Hostnames, expected)
				_, taken := m.taken(in.ID, in.Hostnames)
				switch {
				case m.live(in.ID) == nil:
					expect(rt, op, got, err, tenant.NotFound, nil)
				case expected != stored:
					expect(rt, op, got, err, tenant.VersionMismatch, nil)
				case taken:
					expect(rt, op, got, err, tenant.HostnameTaken, nil)
				default:
					expect(rt, op, got, err, "", stamp(in, stored+1))
				}
			},
			"delete": func(rt *rapid.T) {
				id := rapid.SampledFrom(propIDs).Draw(rt, "id")
				var stored int64
				if d := m.docs[id]; d != nil {
					stored = d.Version
				}
				expected := rapid.SampledFrom([]int64{0, stored, stored + 1}).Draw(rt, "expected version")
				got, err := s.Delete(ctx, id, expected, actor)
				op := fmt.Sprintf("Delete(%s, %d)", id, expected)
				switch {
				case m.live(id) == nil:
					expect(rt, op, got, err, tenant.NotFound, nil)
				case expected != 0 && expected != stored:
					expect(rt, op, got, err, tenant.VersionMismatch, nil)
				default:
					expect(rt, op, got, err, "", &tenant.Tenant{ID: id, Status: tenant.StatusDeleted, Version: stored + 1, UpdatedBy: actor})
				}
			},
			"move hostname": func(rt *rapid.T) {
				// From a tenant holding it among others to another live tenant.
				var froms []string
				for _, h := range slices.Sorted(maps.Keys(m.owners)) {
					if len(m.docs[m.owners[h]].Hostnames) > 1 {
						froms = append(froms, h)
					}
				}
				if len(froms) == 0 {
					rt.Skip("no hostname can move")
				}
				h := rapid.SampledFrom(froms).Draw(rt, "hostname")
				from := m.docs[m.owners[h]]
				var tos []string
				for _, id := range propIDs {
					if m.live(id) != nil && id != from.ID {
						tos = append(tos, id)
					}
				}
				if len(tos) == 0 {
					rt.Skip("no tenant to move to")
				}
				to := m.docs[rapid.SampledFrom(tos).Draw(rt, "to")]

				release := from.Clone()
				release.Hostnames = slices.DeleteFunc(release.Hostnames, func(x string) bool { return x == h })
				got, err := s.Update(ctx, release.Clone(), from.Version, actor)
				expect(rt, "release "+h+" from "+from.ID, got, err, "", stamp(release, from.Version+1))
				claim := to.Clone()
				claim.Hostnames = append(claim.Hostnames, h)
				got, err = s.Update(ctx, claim.Clone(), to.Version, actor)
				expect(rt, "claim "+h+" by "+to.ID, got, err, "", stamp(claim, to.Version+1))
			},
			"": func(rt *rapid.T) { checkModel(rt, s, m, r) },
		})
		// Every tenant's audit chain is whole: a record per version up to the
		// model's, each chained to the one before, whatever failed in between.
		for _, id := range propIDs {
			if d := m.docs[id]; d != nil {
				if rep := verify(rt, s, id, d.Version); len(rep.Problems) > 0 || rep.Records != int(d.Version) || rep.Unchained != 0 {
					rt.Fatalf("audit chain of %s at version %d: %+v", id, d.Version, rep)
				}
			}
		}
	})
}

// checkModel checks that reads and the replayed outbox agree with m.
func checkModel(rt *rapid.T, s catalog.Store, m *model, r *replica) {
	rt.Helper()
	ctx := context.Background()
	var live []string
	for _, id := range propIDs {
		got, err := s.Get(ctx, id)
		want := m.live(id)
		if want == nil {
			wantCode(rt, err, tenant.NotFound)
			continue
		}
		live = append(live, id)
		if err != nil {
			rt.Fatalf("Get(%s): %v", id, err)
		}
		if !cmp.Equal(want, got, equateEmpty, ignoreTime) {
			rt.Fatalf("Get(%s) (-model +store):\n%s", id, cmp.Diff(want, got, equateEmpty, ignoreTime))
		}
	}
	for _, h := range propHosts {
		got, err := s.LookupHostname(ctx, h)
		owner, held := m.owners[h]
		if !held {
			wantCode(rt, err, tenant.NotFound)
			continue
		}
		if err != nil || got.ID != owner {
			rt.Fatalf("LookupHostname(%s) = %v, %v; want %s", h, got, err, owner)
		}
	}
	var listed []string
	for after := ""; ; {
		page, err := s.List(ctx, catalog.ListOptions{After: after, Limit: 2})
		if err != nil {
			rt.Fatalf("List: %v", err)
		}
		if after != "" && len(page.Tenants) == 0 {
			rt.Fatalf("List after Next %q is empty", after)
		}
		for _, tn := range page.Tenants {
			listed = append(listed, tn.ID)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	pageOrder(s, live)
	if !slices.Equal(listed, live) {
		rt.Fatalf("List = %v, model has %v live", listed, live)
	}

	if r.pos == nil {
		r.pos = make([]uint64, s.OutboxShards())
	}
	r.apply(rt, readOutboxAfter(rt, s, r.pos))
	if r.entries != m.writes {
		rt.Fatalf("outbox has %d entries for %d committed writes", r.entries, m.writes)
	}
	if !cmp.Equal(m.docs, r.docs, equateEmpty, ignoreTime) {
		rt.Fatalf("replayed outbox documents (-model +replay):\n%s", cmp.Diff(m.docs, r.docs, equateEmpty, ignoreTime))
	}
	owners := map[string]string{}
	for h, c := range r.holds {
		if c.owner != "" {
			owners[h] = c.owner
		}
	}
	if !cmp.Equal(m.owners, owners, equateEmpty) {
		rt.Fatalf("replayed outbox hostname owners (-model +replay):\n%s", cmp.Diff(m.owners, owners, equateEmpty))
	}
}

// replica applies outbox entries in order the way a region would: documents
// by tenant version, hostname owners by claim version. It fails on anything a
// correct source of truth cannot emit in commit order: a sequence or a tenant
// version that does not increase (a shard's sequence also has no gaps), or
// a claim version that goes back. Entries come merged from every shard in commit order (readOutboxAfter).
type replica struct {
	pos     []uint64 // per shard: last read
	seqs    map[int]uint64
	entries int
	docs    map[string]*tenant.Tenant
	holds   map[string]hold
}

type hold struct {
	owner   string // "" once released
	version int64
}

func newReplica() *replica {
	return &replica{seqs: map[int]uint64{}, docs: map[string]*tenant.Tenant{}, holds: map[string]hold{}}
}

func (r *replica) apply(rt *rapid.T, entries []catalog.OutboxEntry) {
	rt.Helper()
	for _, e := range entries {
		ev := e.Event
		if last := r.seqs[e.Shard]; e.Seq != last+1 {
			rt.Fatalf("outbox shard %d: seq %d after %d; a shard's sequence has no gaps", e.Shard, e.Seq, last)
		}
		r.seqs[e.Shard] = e.Seq
		r.entries++
		if ev.Tenant == nil || ev.Tenant.ID != ev.TenantID || ev.Tenant.Version != ev.Version {
			rt.Fatalf("event %s@%d carries %+v", ev.TenantID, ev.Version, ev.Tenant)
		}
		if prev := r.docs[ev.TenantID]; prev != nil && ev.Version <= prev.Version {
			rt.Fatalf("event %s@%d after version %d", ev.TenantID, ev.Version, prev.Version)
		}
		claims := eventClaims(rt, ev)
		for _, c := range ev.Released {
			cur := r.holds[c.Hostname]
			if cur.owner != ev.TenantID || c.Version <= cur.version {
				rt.Fatalf("event %s@%d releases %s at claim version %d; it was held by %q at %d", ev.TenantID, ev.Version, c.Hostname, c.Version, cur.owner, cur.version)
			}
			r.holds[c.Hostname] = hold{version: c.Version}
		}
		for h, v := range claims {
			cur := r.holds[h]
			switch {
			case v < cur.version:
				rt.Fatalf("event %s@%d claims %s at claim version %d, below %d", ev.TenantID, ev.Version, h, v, cur.version)
			case v == cur.version && cur.owner != ev.TenantID:
				rt.Fatalf("event %s@%d claims %s at claim version %d, which %q holds", ev.TenantID, ev.Version, h, v, cur.owner)
			}
			r.holds[h] = hold{owner: ev.TenantID, version: v}
		}
		r.docs[ev.TenantID] = ev.Tenant
	}
}
