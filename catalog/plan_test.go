package catalog_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

var planAt = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))

// memShell is the smallest store around catalog.PlanWrite: maps in memory,
// applying each plan whole. The property test runs writes through it as the
// bbolt and DynamoDB shells do.
type memShell struct {
	docs   map[string]*tenant.Tenant
	heads  map[string]string
	claims map[string]catalog.HostnameClaim
	audit  map[string][]catalog.AuditRecord
	events []tenant.ChangeEvent
}

func newMemShell() *memShell {
	return &memShell{docs: map[string]*tenant.Tenant{}, heads: map[string]string{},
		claims: map[string]catalog.HostnameClaim{}, audit: map[string][]catalog.AuditRecord{}}
}

// state reads what req's plan needs: every needed claim, the zero claim for
// a hostname never claimed.
func (m *memShell) state(req catalog.WriteRequest) catalog.WriteState {
	cur := m.docs[req.TenantID()]
	st := catalog.WriteState{Current: cur, AuditHead: m.heads[req.TenantID()], Claims: map[string]catalog.HostnameClaim{}}
	for _, h := range req.ClaimsNeeded(cur) {
		st.Claims[h] = m.claims[h]
	}
	return st
}

func (m *memShell) apply(p *catalog.WritePlan) {
	for _, c := range p.Changes {
		m.claims[c.Hostname] = c.To
	}
	m.docs[p.Doc.ID] = p.Result
	m.heads[p.Doc.ID] = p.Audit.Hash
	rec := p.Audit
	rec.Raw = p.AuditJSON
	m.audit[p.Doc.ID] = append(m.audit[p.Doc.ID], rec)
	m.events = append(m.events, p.Event)
}

// heldByOther reports a live tenant other than id that holds one of hosts.
func (m *memShell) heldByOther(id string, hosts []string) (string, bool) {
	for _, h := range hosts {
		for _, d := range m.docs {
			if d.ID != id && !d.Deleted() && d.HasHostname(h) {
				return d.ID, true
			}
		}
	}
	return "", false
}

// expectedCode is what the write rules say req must fail with given the
// documents stored (not the claims: the plan decides from claims, this
// oracle from documents, and the invariant ties the two together), or ""
// if it must commit.
func (m *memShell) expectedCode(req catalog.WriteRequest) tenant.Code {
	cur := m.docs[req.TenantID()]
	live := cur != nil && !cur.Deleted()
	switch req.Action {
	case catalog.ActionCreate:
		if live {
			return tenant.AlreadyExists
		}
	default:
		if !live {
			return tenant.NotFound
		}
		if (req.Action == catalog.ActionUpdate || req.ExpectedVersion != 0) && req.ExpectedVersion != cur.Version {
			return tenant.VersionMismatch
		}
	}
	if _, taken := m.heldByOther(req.TenantID(), req.Hostnames()); taken {
		return tenant.HostnameTaken
	}
	return ""
}

// TestPlanWriteProperty drives random writes through memShell and checks,
// after every one, that the plan is deterministic and leaves its input
// alone, that it fails exactly when the write rules say so, and that the
// claims keep their invariants: no hostname claimed by two tenants, a live
// tenant holds the claim of each of its hostnames, claim versions only ever
// go up (by one per change of owner), events carry the claims as stored,
// and each tenant's audit records form an intact chain.
func TestPlanWriteProperty(t *testing.T) {
	ids := []string{"acme", "globex", "initech"}
	hosts := []string{"a.example.com", "b.example.com", "c.example.com", "d.example.com", "e.example.com"}
	rapid.Check(t, func(rt *rapid.T) {
		m := newMemShell()
		maxVersion := map[string]int64{} // highest claim version seen per hostname
		steps := rapid.IntRange(1, 40).Draw(rt, "steps")
		for step := range steps {
			id := rapid.SampledFrom(ids).Draw(rt, "id")
			action := rapid.SampledFrom([]catalog.Action{catalog.ActionCreate, catalog.ActionUpdate, catalog.ActionDelete}).Draw(rt, "action")
			req := catalog.WriteRequest{Action: action, Actor: "alice", At: planAt.Add(time.Duration(step) * time.Second)}
			if action == catalog.ActionDelete {
				req.ID = id
			} else {
				hs := rapid.SliceOfNDistinct(rapid.SampledFrom(hosts), 1, 3, rapid.ID[string]).Draw(rt, "hostnames")
				req.Tenant = storetest.NewTenant(id, hs...)
			}
			var cur int64
			if d := m.docs[id]; d != nil {
				cur = d.Version
			}
			req.ExpectedVersion = rapid.SampledFrom([]int64{cur, cur, cur, 0, cur + 1}).Draw(rt, "expected")

			st := m.state(req)
			before := cloneState(st)
			p, err := catalog.PlanWrite(st, req)
			again, errAgain := catalog.PlanWrite(st, req)
			if diff := cmp.Diff(before, st); diff != "" {
				rt.Fatalf("step %d: PlanWrite changed its input (-before +after):\n%s", step, diff)
			}
			if diff := cmp.Diff(fmt.Sprint(err), fmt.Sprint(errAgain)); diff != "" {
				rt.Fatalf("step %d: not deterministic: errors differ:\n%s", step, diff)
			}
			if diff := cmp.Diff(p, again); diff != "" {
				rt.Fatalf("step %d: not deterministic: plans differ:\n%s", step, diff)
			}

			want := m.expectedCode(req)
			if err != nil {
				var te *tenant.Error
				if !errors.As(err, &te) || te.Code != want || want == "" {
					rt.Fatalf("step %d: %s %s: error %v; want code %q", step, action, id, err, want)
				}
				continue
			}
			if want != "" {
				rt.Fatalf("step %d: %s %s committed; want %s", step, action, id, want)
			}
			checkPlan(rt, st, req, p)
			m.apply(p)
			checkInvariants(rt, m, maxVersion)
		}
		for id, recs := range m.audit {
			if rep := catalog.VerifyChain(id, recs, m.docs[id].Version); len(rep.Problems) > 0 {
				rt.Fatalf("audit chain of %s: %v", id, rep.Problems)
			}
		}
	})
}

func cloneState(st catalog.WriteState) catalog.WriteState {
	out := st
	if st.Current != nil {
		out.Current = st.Current.Clone()
	}
	out.Claims = map[string]catalog.HostnameClaim{}
	for h, c := range st.Claims {
		out.Claims[h] = c
	}
	return out
}

// checkPlan checks one plan against the state it was made from.
func checkPlan(rt *rapid.T, st catalog.WriteState, req catalog.WriteRequest, p *catalog.WritePlan) {
	id := req.TenantID()
	wantVersion := int64(1)
	if st.Current != nil {
		wantVersion = st.Current.Version + 1
	}
	if p.Doc.Version != wantVersion || p.Event.Version != wantVersion || p.Audit.Version != wantVersion {
		rt.Fatalf("%s %s: versions doc %d, event %d, audit %d; want %d", req.Action, id, p.Doc.Version, p.Event.Version, p.Audit.Version, wantVersion)
	}
	if req.Action == catalog.ActionDelete != p.Doc.Deleted() {
		rt.Fatalf("%s %s: stored status %s", req.Action, id, p.Doc.Status)
	}
	if !p.Doc.UpdatedAt.Equal(req.At.Truncate(time.Microsecond)) || p.Doc.UpdatedAt.Location() != time.UTC || p.Doc.UpdatedBy != req.Actor {
		rt.Fatalf("%s %s: stamped %v by %q", req.Action, id, p.Doc.UpdatedAt, p.Doc.UpdatedBy)
	}
	if diff := cmp.Diff(p.Doc, p.Result); diff != "" {
		rt.Fatalf("%s %s: Result is not Doc (-doc +result):\n%s", req.Action, id, diff)
	}
	if p.Audit.PrevHash != st.AuditHead {
		rt.Fatalf("%s %s: audit prev hash %q; want the head %q", req.Action, id, p.Audit.PrevHash, st.AuditHead)
	}
	if h, err := catalog.AuditHash(p.AuditJSON); err != nil || h != p.Audit.Hash {
		rt.Fatalf("%s %s: audit hash %q, JSON hashes to %q (%v)", req.Action, id, p.Audit.Hash, h, err)
	}
	for i, c := range p.Changes {
		if c.From != st.Claims[c.Hostname] {
			rt.Fatalf("%s %s: change of %s from %+v; stored %+v", req.Action, id, c.Hostname, c.From, st.Claims[c.Hostname])
		}
		if c.To.Version != c.From.Version+1 || c.To.Owner == c.From.Owner {
			rt.Fatalf("%s %s: change of %s from %+v to %+v", req.Action, id, c.Hostname, c.From, c.To)
		}
		if c.To.Owner != "" && c.To.Owner != id || c.From.Owner != "" && c.From.Owner != id {
			rt.Fatalf("%s %s: change of %s from %+v to %+v moves another tenant's claim", req.Action, id, c.Hostname, c.From, c.To)
		}
		if i > 0 && p.Changes[i-1].Hostname == c.Hostname {
			rt.Fatalf("%s %s: %s changed twice", req.Action, id, c.Hostname)
		}
	}
}

// checkInvariants checks the state after a plan was applied.
func checkInvariants(rt *rapid.T, m *memShell, maxVersion map[string]int64) {
	for h, c := range m.claims {
		if c.Version < maxVersion[h] {
			rt.Fatalf("claim version of %s went back from %d to %d", h, maxVersion[h], c.Version)
		}
		maxVersion[h] = c.Version
		if c.Owner == "" {
			continue
		}
		d := m.docs[c.Owner]
		if d == nil || d.Deleted() || !d.HasHostname(h) {
			rt.Fatalf("%s is claimed by %s, which does not hold it (%+v)", h, c.Owner, d)
		}
	}
	for id, d := range m.docs {
		if d.Deleted() {
			continue
		}
		for _, h := range d.Hostnames {
			if c := m.claims[h]; c.Owner != id {
				rt.Fatalf("live tenant %s holds %s, claimed by %q", id, h, c.Owner)
			}
		}
	}
	ev := m.events[len(m.events)-1]
	var held []tenant.Claim
	for _, h := range catalog.SortedSet(ev.Tenant.Hostnames) {
		held = append(held, tenant.Claim{Hostname: h, Version: m.claims[h].Version})
	}
	if diff := cmp.Diff(held, ev.Claims); diff != "" {
		rt.Fatalf("event of %s/%d: claims differ from the stored ones (-stored +event):\n%s", ev.TenantID, ev.Version, diff)
	}
	for _, r := range ev.Released {
		if c := m.claims[r.Hostname]; c.Owner != "" || c.Version != r.Version {
			rt.Fatalf("event of %s/%d releases %s at %d; stored %+v", ev.TenantID, ev.Version, r.Hostname, r.Version, c)
		}
	}
	if !slices.IsSortedFunc(ev.Released, func(a, b tenant.Claim) int { return strings.Compare(a.Hostname, b.Hostname) }) {
		rt.Fatalf("event of %s/%d: releases not sorted: %v", ev.TenantID, ev.Version, ev.Released)
	}
}

func claimsOf(kv ...any) map[string]catalog.HostnameClaim {
	out := map[string]catalog.HostnameClaim{}
	for i := 0; i < len(kv); i += 3 {
		out[kv[i].(string)] = catalog.HostnameClaim{Owner: kv[i+1].(string), Version: int64(kv[i+2].(int))}
	}
	return out
}

func tombstone(id string, version int64) *tenant.Tenant {
	return &tenant.Tenant{ID: id, Status: tenant.StatusDeleted, Version: version}
}

func at(id string, version int64, hostnames ...string) *tenant.Tenant {
	t := storetest.NewTenant(id, hostnames...)
	t.Version = version
	return t
}

// TestPlanWrite checks the rules of PlanWrite one by one.
func TestPlanWrite(t *testing.T) {
	t.Parallel()
	type want struct {
		code     tenant.Code // "" when the write commits
		version  int64
		changes  []catalog.ClaimChange
		claims   []tenant.Claim
		released []tenant.Claim
		before   bool // the audit record has a Before
	}
	for _, tc := range []struct {
		name string
		st   catalog.WriteState
		req  catalog.WriteRequest
		want want
	}{{
		name: "create new at version 1, claiming free hostnames",
		st:   catalog.WriteState{Claims: claimsOf("a.example.com", "", 0, "b.example.com", "", 4)},
		req:  catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: storetest.NewTenant("acme", "b.example.com", "a.example.com")},
		want: want{version: 1,
			changes: []catalog.ClaimChange{
				{Hostname: "a.example.com", To: catalog.HostnameClaim{Owner: "acme", Version: 1}},
				{Hostname: "b.example.com", From: catalog.HostnameClaim{Version: 4}, To: catalog.HostnameClaim{Owner: "acme", Version: 5}},
			},
			claims: []tenant.Claim{{Hostname: "a.example.com", Version: 1}, {Hostname: "b.example.com", Version: 5}}},
	}, {
		name: "create over a tombstone continues its versions",
		st:   catalog.WriteState{Current: tombstone("acme", 7), AuditHead: "ab", Claims: claimsOf("a.example.com", "", 2)},
		req:  catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: storetest.NewTenant("acme", "a.example.com")},
		want: want{version: 8,
			changes: []catalog.ClaimChange{{Hostname: "a.example.com", From: catalog.HostnameClaim{Version: 2}, To: catalog.HostnameClaim{Owner: "acme", Version: 3}}},
			claims:  []tenant.Claim{{Hostname: "a.example.com", Version: 3}}},
	}, {
		name: "create of a live tenant",
		st:   catalog.WriteState{Current: at("acme", 2, "a.example.com"), Claims: claimsOf("a.example.com", "acme", 1)},
		req:  catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: storetest.NewTenant("acme", "a.example.com")},
		want: want{code: tenant.AlreadyExists},
	}, {
		name: "create claiming another tenant's hostname",
		st:   catalog.WriteState{Claims: claimsOf("a.example.com", "globex", 3)},
		req:  catalog.WriteRequest{Action: catalog.ActionCreate, Tenant: storetest.NewTenant("acme", "a.example.com")},
		want: want{code: tenant.HostnameTaken},
	}, {
		name: "update keeps, claims and releases",
		st: catalog.WriteState{Current: at("acme", 3, "a.example.com", "b.example.com"),
			Claims: claimsOf("a.example.com", "acme", 2, "b.example.com", "acme", 5, "c.example.com", "", 0)},
		req: catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "a.example.com", "c.example.com"), ExpectedVersion: 3},
		want: want{version: 4, before: true,
			changes: []catalog.ClaimChange{
				{Hostname: "c.example.com", To: catalog.HostnameClaim{Owner: "acme", Version: 1}},
				{Hostname: "b.example.com", From: catalog.HostnameClaim{Owner: "acme", Version: 5}, To: catalog.HostnameClaim{Version: 6}},
			},
			claims:   []tenant.Claim{{Hostname: "a.example.com", Version: 2}, {Hostname: "c.example.com", Version: 1}},
			released: []tenant.Claim{{Hostname: "b.example.com", Version: 6}}},
	}, {
		name: "update leaves a dropped hostname another tenant holds",
		st: catalog.WriteState{Current: at("acme", 3, "a.example.com", "b.example.com"),
			Claims: claimsOf("a.example.com", "acme", 2, "b.example.com", "globex", 9)},
		req:  catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "a.example.com"), ExpectedVersion: 3},
		want: want{version: 4, before: true, claims: []tenant.Claim{{Hostname: "a.example.com", Version: 2}}},
	}, {
		name: "update at another version",
		st:   catalog.WriteState{Current: at("acme", 3, "a.example.com"), Claims: claimsOf("a.example.com", "acme", 2)},
		req:  catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "a.example.com"), ExpectedVersion: 2},
		want: want{code: tenant.VersionMismatch},
	}, {
		name: "update of a tombstone",
		st:   catalog.WriteState{Current: tombstone("acme", 3), Claims: claimsOf("a.example.com", "", 2)},
		req:  catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "a.example.com"), ExpectedVersion: 3},
		want: want{code: tenant.NotFound},
	}, {
		name: "delete at any version releases every hostname",
		st:   catalog.WriteState{Current: at("acme", 5, "a.example.com"), AuditHead: "cd", Claims: claimsOf("a.example.com", "acme", 2)},
		req:  catalog.WriteRequest{Action: catalog.ActionDelete, ID: "acme"},
		want: want{version: 6, before: true,
			changes:  []catalog.ClaimChange{{Hostname: "a.example.com", From: catalog.HostnameClaim{Owner: "acme", Version: 2}, To: catalog.HostnameClaim{Version: 3}}},
			released: []tenant.Claim{{Hostname: "a.example.com", Version: 3}}},
	}, {
		name: "delete at another version",
		st:   catalog.WriteState{Current: at("acme", 5, "a.example.com"), Claims: claimsOf("a.example.com", "acme", 2)},
		req:  catalog.WriteRequest{Action: catalog.ActionDelete, ID: "acme", ExpectedVersion: 4},
		want: want{code: tenant.VersionMismatch},
	}, {
		name: "delete of an id never stored",
		st:   catalog.WriteState{Claims: claimsOf()},
		req:  catalog.WriteRequest{Action: catalog.ActionDelete, ID: "acme"},
		want: want{code: tenant.NotFound},
	}, {
		name: "no tenant",
		req:  catalog.WriteRequest{Action: catalog.ActionCreate},
		want: want{code: tenant.Invalid},
	}, {
		name: "caller-made tombstone",
		req:  catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: tombstone("acme", 0)},
		want: want{code: tenant.Invalid},
	}, {
		name: "unknown action",
		req:  catalog.WriteRequest{Action: "resync", Tenant: storetest.NewTenant("acme")},
		want: want{code: tenant.Invalid},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.req.Actor, tc.req.At = "alice", planAt
			tc.req.Trace = tenant.TraceContext{Parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", State: "v=1"}
			p, err := catalog.PlanWrite(tc.st, tc.req)
			if tc.want.code != "" {
				if got := tenant.ErrorCode(err); got != tc.want.code {
					t.Fatalf("error %v (code %q); want code %q", err, got, tc.want.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Doc.Version != tc.want.version {
				t.Errorf("version %d; want %d", p.Doc.Version, tc.want.version)
			}
			if diff := cmp.Diff(tc.want.changes, p.Changes); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want.claims, p.Event.Claims); diff != "" {
				t.Errorf("event claims (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want.released, p.Event.Released); diff != "" {
				t.Errorf("event releases (-want +got):\n%s", diff)
			}
			if got := p.Audit.Before != nil; got != tc.want.before {
				t.Errorf("audit record has Before: %v; want %v", got, tc.want.before)
			}
			if p.Audit.PrevHash != tc.st.AuditHead || p.Audit.Action != tc.req.Action || p.Audit.Actor != "alice" {
				t.Errorf("audit record %+v; want action %s by alice after %q", p.Audit, tc.req.Action, tc.st.AuditHead)
			}
			if want := planAt.UTC().Truncate(time.Microsecond); !p.Event.CommittedAt.Equal(want) || p.Event.CommittedAt.Location() != time.UTC {
				t.Errorf("committed at %v; want %v in UTC", p.Event.CommittedAt, want)
			}
			if p.Event.Trace != tc.req.Trace {
				t.Errorf("event trace context %+v; want the request's %+v", p.Event.Trace, tc.req.Trace)
			}
		})
	}
}

// TestPlanWriteMissingClaim checks that a shell which did not read a claim
// the plan needs gets an internal error, not a plan made on a guess.
func TestPlanWriteMissingClaim(t *testing.T) {
	t.Parallel()
	st := catalog.WriteState{Current: at("acme", 1, "a.example.com"), Claims: claimsOf("b.example.com", "", 0)}
	req := catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "b.example.com"), ExpectedVersion: 1}
	if got := req.ClaimsNeeded(st.Current); !slices.Equal(got, []string{"a.example.com", "b.example.com"}) {
		t.Fatalf("ClaimsNeeded = %v; want both the kept and the dropped hostname", got)
	}
	_, err := catalog.PlanWrite(st, req)
	var te *tenant.Error
	if err == nil || errors.As(err, &te) {
		t.Fatalf("PlanWrite without the claim of a.example.com: %v; want an internal error", err)
	}
	if want := `"a.example.com"`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %s", err, want)
	}
}

// TestResyncEvent checks the event that re-emits a tenant: its claims as
// stored, and releases only of settled hostnames that are free after having
// been claimed.
func TestResyncEvent(t *testing.T) {
	t.Parallel()
	doc := at("acme", 4, "a.example.com", "b.example.com")
	claims := claimsOf("a.example.com", "acme", 3, "b.example.com", "globex", 2,
		"c.example.com", "", 5, "d.example.com", "globex", 1)
	ev := catalog.ResyncEvent(doc, claims, []string{"a.example.com", "c.example.com", "d.example.com", "e.example.com"}, []string{"eu"}, planAt, tenant.TraceContext{})
	want := tenant.ChangeEvent{TenantID: "acme", Version: 4, Tenant: doc, CommittedAt: planAt, Resync: true, Regions: []string{"eu"},
		Claims:   []tenant.Claim{{Hostname: "a.example.com", Version: 3}},
		Released: []tenant.Claim{{Hostname: "c.example.com", Version: 5}},
	}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Fatalf("ResyncEvent (-want +got):\n%s", diff)
	}
}

// BenchmarkPlanWrite measures the CPU cost of planning an update that keeps
// one hostname, claims one and releases one: encoding, decoding and sealing
// included.
func BenchmarkPlanWrite(b *testing.B) {
	st := catalog.WriteState{Current: at("acme", 3, "a.example.com", "b.example.com"), AuditHead: strings.Repeat("ab", 32),
		Claims: claimsOf("a.example.com", "acme", 2, "b.example.com", "acme", 5, "c.example.com", "", 0)}
	req := catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: storetest.NewTenant("acme", "a.example.com", "c.example.com"),
		ExpectedVersion: 3, Actor: "bench", At: planAt}
	for b.Loop() {
		if _, err := catalog.PlanWrite(st, req); err != nil {
			b.Fatal(err)
		}
	}
}
