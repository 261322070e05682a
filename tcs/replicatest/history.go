package replicatest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// The pools a history draws from. A history uses the first 3–6 ids and the
// first 4–10 hostnames, so that hostnames collide and move between tenants
// often.
var (
	poolIDs   = []string{"ten-a", "ten-b", "ten-c", "ten-d", "ten-e", "ten-f"}
	poolHosts = []string{
		"h0.example.com", "h1.example.com", "h2.example.com", "h3.example.com", "h4.example.com",
		"h5.example.com", "h6.example.com", "h7.example.com", "h8.example.com", "h9.example.com",
	}
)

const actor = "replicatest"

// History is a random history of writes committed to a source of truth.
type History struct {
	// IDs are the tenant ids the history drew from; some may never have been
	// created.
	IDs []string
	// Hostnames are the hostnames it drew from; some may never have been
	// claimed.
	Hostnames []string
	// Events are every event of the source's outbox, in commit order.
	Events []*tenant.ChangeEvent
}

// DrawHistory commits a random history of 10 to 60 steps to src, which must
// be new and empty, and returns it with the outbox's events. A step is a
// create (of free hostnames, or sometimes of any, which may be taken), an
// update (hostnames kept, dropped or added; the label or the status
// changed), a delete, a re-create after a delete, or a move (tenant A drops a
// hostname, then tenant B adds it: two commits). Steps the source rejects
// (a taken hostname, an existing id) commit nothing and are skipped.
//
// The steps are drawn first, as choices that the source's state at each step
// interprets, so that rapid can shrink a failing history by dropping steps.
func DrawHistory(t *rapid.T, src catalog.Store) History {
	t.Helper()
	h := History{
		IDs:       poolIDs[:rapid.IntRange(3, len(poolIDs)).Draw(t, "tenant ids")],
		Hostnames: poolHosts[:rapid.IntRange(4, len(poolHosts)).Draw(t, "hostnames")],
	}
	g := &generator{t: t, src: src, h: &h, live: map[string]*tenant.Tenant{}, deleted: map[string]bool{}}
	// 5 to 10 rounds of 2 to 6 steps: 10 to 60 steps, 30 on average (one
	// flat slice would average 20), and rapid can still shrink a failing
	// history by deleting steps.
	for _, round := range rapid.SliceOfN(rapid.SliceOfN(stepGen, 2, 6), 5, 10).Draw(t, "steps") {
		for _, s := range round {
			g.run(s)
		}
	}

	for _, e := range readOutbox(t, src, make([]uint64, src.OutboxShards())) {
		h.Events = append(h.Events, &e.Event)
	}
	if len(h.Events) != g.commits {
		t.Fatalf("outbox holds %d events for %d commits", len(h.Events), g.commits)
	}
	return h
}

// step is one drawn step of a history: what to do, and choices that pick,
// by index modulo the candidates at that point, the tenants and hostnames it
// acts on.
type step struct {
	Kind    string
	Tenant  int   // the tenant acted on (the one giving a hostname up in a move)
	Other   int   // the tenant receiving a move; a fallback hostname
	Hosts   []int // hostnames to take: a create's, an update's additions
	Drop    int   // bit i drops the tenant's hostname i (update); the hostname moved (move)
	Any     bool  // take hostnames from all, free or not, instead of only free ones
	Label   int   // 0: no labels, 1: k=x, 2: k=y
	Suspend bool
}

// GoString makes rapid's log of the drawn steps readable.
func (s step) GoString() string {
	return fmt.Sprintf("{%s tenant=%d other=%d hosts=%v drop=%b any=%t label=%d suspend=%t}",
		s.Kind, s.Tenant, s.Other, s.Hosts, s.Drop, s.Any, s.Label, s.Suspend)
}

var stepGen = rapid.Custom(func(t *rapid.T) step {
	return step{
		Kind:    rapid.SampledFrom([]string{"create", "update", "update", "delete", "recreate", "move", "move"}).Draw(t, "kind"),
		Tenant:  rapid.IntRange(0, len(poolIDs)-1).Draw(t, "tenant"),
		Other:   rapid.IntRange(0, len(poolHosts)-1).Draw(t, "other"),
		Hosts:   rapid.SliceOfN(rapid.IntRange(0, len(poolHosts)-1), 0, 3).Draw(t, "hosts"),
		Drop:    rapid.IntRange(0, 15).Draw(t, "drop"),
		Any:     rapid.IntRange(0, 4).Draw(t, "any") == 0,
		Label:   rapid.IntRange(0, 2).Draw(t, "label"),
		Suspend: rapid.IntRange(0, 5).Draw(t, "suspend") == 0,
	}
})

// generator runs the steps of a history and keeps what it needs to
// interpret them: the live documents and the deleted ids.
type generator struct {
	t       *rapid.T
	src     catalog.Store
	h       *History
	live    map[string]*tenant.Tenant
	deleted map[string]bool
	commits int
}

func (g *generator) run(s step) {
	switch s.Kind {
	case "create":
		// An id that is not live, if there is one (a new tenant, or a
		// re-create); else any, which the source rejects.
		ids := slices.DeleteFunc(slices.Clone(g.h.IDs), func(id string) bool { return g.live[id] != nil })
		if len(ids) == 0 {
			ids = g.h.IDs
		}
		g.create(ids[s.Tenant%len(ids)], s)
	case "recreate":
		if gone := slices.Sorted(maps.Keys(g.deleted)); len(gone) > 0 {
			g.create(gone[s.Tenant%len(gone)], s)
		}
	case "update":
		g.update(s)
	case "delete":
		g.delete(s)
	case "move":
		g.move(s)
	}
}

// free returns the hostnames no live tenant holds.
func (g *generator) free() []string {
	held := map[string]bool{}
	for _, d := range g.live {
		for _, h := range d.Hostnames {
			held[h] = true
		}
	}
	var out []string
	for _, h := range g.h.Hostnames {
		if !held[h] {
			out = append(out, h)
		}
	}
	return out
}

// pick returns the distinct hostnames s.Hosts chooses: among the free ones,
// or among all if s.Any or none is free (the source may then reject a taken
// one).
func (g *generator) pick(s step) []string {
	from := g.free()
	if s.Any || len(from) == 0 {
		from = g.h.Hostnames
	}
	var out []string
	for _, i := range s.Hosts {
		if h := from[i%len(from)]; !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// liveIDs returns the live tenant ids in order, but except.
func (g *generator) liveIDs(except string) []string {
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(g.live)) {
		if id != except {
			ids = append(ids, id)
		}
	}
	return ids
}

// doc returns a document for id holding hostnames, with the step's label
// and status, as tenant.Prepare would leave it.
func (g *generator) doc(id string, hostnames []string, s step) *tenant.Tenant {
	d := storetest.NewTenant(id, hostnames...)
	if s.Label > 0 {
		d.Labels = map[string]string{"k": []string{"x", "y"}[s.Label-1]}
	}
	if s.Suspend {
		d.Status = tenant.StatusSuspended
	}
	return d
}

// done records a write's outcome: a commit, or a rejection the source is
// allowed to make.
func (g *generator) done(op string, out *tenant.Tenant, err error) bool {
	g.t.Helper()
	switch tenant.ErrorCode(err) {
	case "":
		g.commits++
		if out.Deleted() {
			delete(g.live, out.ID)
			g.deleted[out.ID] = true
		} else {
			g.live[out.ID] = out
			delete(g.deleted, out.ID)
		}
		return true
	case tenant.AlreadyExists, tenant.HostnameTaken, tenant.NotFound, tenant.VersionMismatch:
		return false
	}
	g.t.Fatalf("%s: %v", op, err)
	return false
}

func (g *generator) create(id string, s step) {
	hostnames := g.pick(s)
	if len(hostnames) == 0 {
		hostnames = []string{g.h.Hostnames[s.Other%len(g.h.Hostnames)]}
	}
	out, err := g.src.Create(context.Background(), g.doc(id, hostnames, s), actor)
	g.done(fmt.Sprintf("Create(%s %v)", id, hostnames), out, err)
}

func (g *generator) update(s step) {
	ids := g.liveIDs("")
	if len(ids) == 0 {
		return
	}
	prev := g.live[ids[s.Tenant%len(ids)]]
	var hostnames []string
	for i, h := range prev.Hostnames {
		if s.Drop&(1<<i) == 0 {
			hostnames = append(hostnames, h)
		}
	}
	for _, h := range g.pick(s) {
		if !slices.Contains(hostnames, h) {
			hostnames = append(hostnames, h)
		}
	}
	if len(hostnames) == 0 {
		hostnames = prev.Hostnames[:1]
	}
	out, err := g.src.Update(context.Background(), g.doc(prev.ID, hostnames, s), prev.Version, actor)
	g.done(fmt.Sprintf("Update(%s %v)", prev.ID, hostnames), out, err)
}

func (g *generator) delete(s step) {
	ids := g.liveIDs("")
	if len(ids) == 0 {
		return
	}
	prev := g.live[ids[s.Tenant%len(ids)]]
	out, err := g.src.Delete(context.Background(), prev.ID, prev.Version, actor)
	g.done("Delete("+prev.ID+")", out, err)
}

// move has tenant a drop a hostname and then tenant b add it. If the
// hostname was a's only one, a takes a free one instead.
func (g *generator) move(s step) {
	ids := g.liveIDs("")
	if len(ids) < 2 {
		return
	}
	a := g.live[ids[s.Tenant%len(ids)]]
	others := g.liveIDs(a.ID)
	b := g.live[others[s.Other%len(others)]]
	h := a.Hostnames[s.Drop%len(a.Hostnames)]
	rest := slices.DeleteFunc(slices.Clone(a.Hostnames), func(x string) bool { return x == h })
	if len(rest) == 0 {
		free := g.free()
		if len(free) == 0 {
			return
		}
		rest = []string{free[s.Other%len(free)]}
	}
	out, err := g.src.Update(context.Background(), g.doc(a.ID, rest, s), a.Version, actor)
	if !g.done(fmt.Sprintf("move %s: Update(%s %v)", h, a.ID, rest), out, err) {
		return
	}
	hostnames := append(slices.Clone(b.Hostnames), h)
	out, err = g.src.Update(context.Background(), g.doc(b.ID, hostnames, s), b.Version, actor)
	g.done(fmt.Sprintf("move %s: Update(%s %v)", h, b.ID, hostnames), out, err)
}

// DrawDelivery returns events as an unreliable stream might deliver them:
// each event one to three times, all copies in a random order (across and
// within tenants), then a replay of a random subset of the events, in a
// random order.
func DrawDelivery(t *rapid.T, events []*tenant.ChangeEvent) []*tenant.ChangeEvent {
	t.Helper()
	// Indexes, not events, are drawn, so that a failure prints readably.
	var copies []int
	for i := range events {
		for range rapid.IntRange(1, 3).Draw(t, fmt.Sprintf("copies of event %d", i)) {
			copies = append(copies, i)
		}
	}
	order := rapid.Permutation(copies).Draw(t, "delivery order")
	if len(events) > 0 {
		order = append(order, rapid.SliceOfNDistinct(rapid.IntRange(0, len(events)-1), 0, len(events), rapid.ID[int]).Draw(t, "replayed events")...)
	}
	out := make([]*tenant.ChangeEvent, len(order))
	for i, e := range order {
		out[i] = events[e]
	}
	return out
}

// TempDir returns a new directory for test files, removed when t ends. It is
// in /dev/shm when that is usable, so that the fsyncs of bbolt files cost
// next to nothing and property tests can afford thousands of files.
func TempDir(t interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}) string {
	t.Helper()
	parent := os.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		parent = "/dev/shm"
	}
	dir, err := os.MkdirTemp(parent, "replicatest-")
	if err != nil && parent != os.TempDir() {
		dir, err = os.MkdirTemp(os.TempDir(), "replicatest-")
	}
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// OpenSource opens a new, empty source of truth (a catalog/bolt store) in a
// TempDir, closed when t ends.
func OpenSource(t *rapid.T) catalog.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(TempDir(t), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatalf("open source of truth: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
