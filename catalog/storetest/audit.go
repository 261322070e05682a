package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
)

// auditTests are the audit chain tests Run runs on every backend.
var auditTests = []struct {
	name string
	test func(t *testing.T, s catalog.Store)
}{
	{"AuditChain", testAuditChain},
	{"AuditResync", testAuditResync},
	{"AuditConcurrent", testAuditConcurrent},
}

// chainOf returns every audit record of chain, oldest first.
func chainOf(t tb, s catalog.Store, chain string) []catalog.AuditRecord {
	t.Helper()
	var all []catalog.AuditRecord
	var before int64
	for {
		page, err := s.History(context.Background(), chain, catalog.HistoryOptions{Before: before, Limit: catalog.MaxPageSize})
		if err != nil {
			t.Fatalf("History(%s, before %d): %v", chain, before, err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		before = page[len(page)-1].Version
	}
	slices.Reverse(all)
	return all
}

// verify verifies chain against latest and returns the report.
func verify(t tb, s catalog.Store, chain string, latest int64) catalog.ChainReport {
	t.Helper()
	return catalog.VerifyChain(chain, chainOf(t, s, chain), latest)
}

func wantIntact(t tb, rep catalog.ChainReport, records int) {
	t.Helper()
	if len(rep.Problems) > 0 || rep.Records != records || rep.Unchained != 0 || rep.Head == "" {
		t.Fatalf("chain %s: %d records (%d unchained), head %q, problems %v; want %d records, all chained, no problems",
			rep.Chain, rep.Records, rep.Unchained, rep.Head, rep.Problems, records)
	}
}

// testAuditChain: every write appends a record chained to the one before,
// across a delete and a re-create; the records are served as stored (Raw),
// hash to their Hash, and a rejected write appends nothing.
func testAuditChain(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, NewTenant("acme"))
	next := a.Clone()
	next.Labels = map[string]string{"tier": "gold <&> \u2028 \"quoted\""} // characters json.Marshal escapes
	a = mustUpdate(t, s, next, a.Version)
	if _, err := s.Update(ctx, a.Clone(), a.Version+5, actor); err == nil {
		t.Fatalf("Update at a wrong version succeeded")
	}
	if _, err := s.Delete(ctx, "acme", 0, actor); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	again := mustCreate(t, s, NewTenant("acme"))
	mustCreate(t, s, NewTenant("acm")) // a neighbour with its own chain

	recs := chainOf(t, s, "acme")
	wantIntact(t, catalog.VerifyChain("acme", recs, again.Version), 4)
	if recs[0].PrevHash != "" {
		t.Fatalf("first record's prev_hash %q, want none", recs[0].PrevHash)
	}
	for i, r := range recs {
		if len(r.Raw) == 0 {
			t.Fatalf("record %d read without its stored JSON (Raw)", r.Version)
		}
		h, err := catalog.AuditHash(r.Raw)
		if err != nil || h != r.Hash {
			t.Fatalf("record %d: AuditHash = %s, %v; record says %s", r.Version, h, err, r.Hash)
		}
		if i > 0 && r.PrevHash != recs[i-1].Hash {
			t.Fatalf("record %d: prev_hash %s, want the hash of record %d %s", r.Version, r.PrevHash, recs[i-1].Version, recs[i-1].Hash)
		}
		served, err := json.Marshal(r)
		if err != nil || !bytes.Equal(served, r.Raw) {
			t.Fatalf("record %d marshals to %s, %v; want its stored JSON %s", r.Version, served, err, r.Raw)
		}
	}
	wantIntact(t, verify(t, s, "acm", 1), 1)
}

// testAuditResync: resync and resync-all append to the AdminAuditID chain
// (the caller's name, the tenants or "all", the regions) and leave the
// tenants' chains alone.
func testAuditResync(t *testing.T, s catalog.Store) {
	if recs := chainOf(t, s, catalog.AdminAuditID); len(recs) != 0 {
		t.Fatalf("a new store's resync chain holds %d records", len(recs))
	}
	for _, id := range []string{"t-1", "t-2", "t-3"} {
		mustCreate(t, s, NewTenant(id))
	}
	ctx := auth.NewContext(t.Context(), auth.Identity{Name: "ops-alice", Role: auth.Admin})
	if _, err := s.Resync(ctx, []catalog.ResyncRequest{{ID: "t-2"}, {ID: "ghost"}, {ID: "t-2"}}, []string{"eu-west-1", "us-east-1"}); err != nil {
		t.Fatalf("Resync: %v", err)
	}
	ctx = auth.NewContext(t.Context(), auth.Identity{Name: "ops-bob", Role: auth.Admin})
	if _, err := s.Resync(ctx, []catalog.ResyncRequest{{ID: "ghost"}}, nil); err != nil {
		t.Fatalf("Resync of an unknown id: %v", err)
	}
	after := ""
	for {
		_, next, err := s.ResyncAll(ctx, after, 2, nil)
		if err != nil {
			t.Fatalf("ResyncAll(%q): %v", after, err)
		}
		if next == "" {
			break
		}
		after = next
	}
	if _, err := s.Resync(ctx, []catalog.ResyncRequest{{ID: "BAD"}}, nil); err == nil {
		t.Fatalf("Resync of an invalid id succeeded")
	}

	recs := chainOf(t, s, catalog.AdminAuditID)
	wantIntact(t, catalog.VerifyChain(catalog.AdminAuditID, recs, 0), 4)
	type summary struct {
		Action  catalog.Action
		Actor   string
		Resync  catalog.ResyncAudit
		Tenants bool
	}
	var got []summary
	for _, r := range recs {
		if r.Before != nil || r.After != nil || r.Resync == nil || r.At.IsZero() {
			t.Fatalf("resync record %d: before %v after %v resync %v at %v; want only resync and a time", r.Version, r.Before, r.After, r.Resync, r.At)
		}
		got = append(got, summary{Action: r.Action, Actor: r.Actor, Resync: *r.Resync})
	}
	want := []summary{
		{Action: catalog.ActionResync, Actor: "ops-alice", Resync: catalog.ResyncAudit{Tenants: []string{"t-2", "ghost"}, Regions: []string{"eu-west-1", "us-east-1"}}},
		{Action: catalog.ActionResync, Actor: "ops-bob", Resync: catalog.ResyncAudit{Tenants: []string{"ghost"}}},
		{Action: catalog.ActionResyncAll, Actor: "ops-bob", Resync: catalog.ResyncAudit{All: true, Tenants: []string{"t-1", "t-2"}}},
		{Action: catalog.ActionResyncAll, Actor: "ops-bob", Resync: catalog.ResyncAudit{All: true, After: "t-2", Tenants: []string{"t-3"}}},
	}
	wantSame(t, "resync audit records", want, got)
	for _, id := range []string{"t-1", "t-2", "t-3"} {
		wantIntact(t, verify(t, s, id, 1), 1)
	}
}

// testAuditConcurrent: concurrent writes to a tenant and concurrent resyncs
// each append exactly one record to their chain, none lost or forked.
func testAuditConcurrent(t *testing.T, s catalog.Store) {
	a := mustCreate(t, s, NewTenant("acme"))
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wins int64
	for i := range n {
		wg.Go(func() {
			ctx := auth.NewContext(context.Background(), auth.Identity{Name: fmt.Sprintf("op-%d", i), Role: auth.Admin})
			if _, err := s.Resync(ctx, []catalog.ResyncRequest{{ID: "acme"}}, nil); err != nil {
				t.Errorf("Resync %d: %v", i, err)
			}
			// Each writer retries at the version it reads until it wins.
			for {
				cur, err := s.Get(ctx, "acme")
				if err != nil {
					t.Errorf("Get: %v", err)
					return
				}
				next := cur.Clone()
				next.Labels = map[string]string{"writer": strconv.Itoa(i)}
				_, err = s.Update(ctx, next, cur.Version, fmt.Sprintf("writer-%d", i))
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
					return
				}
				if tenant.ErrorCode(err) != tenant.VersionMismatch {
					t.Errorf("Update %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	wantIntact(t, verify(t, s, "acme", a.Version+wins), int(a.Version+wins))
	wantIntact(t, verify(t, s, catalog.AdminAuditID, 0), n)
}

// Tamperer changes stored audit records behind a store's back, as someone
// with write access to its storage could: what the tamper suite detects.
type Tamperer interface {
	// PutAuditRaw stores raw as the record of chain at version, replacing
	// any record there.
	PutAuditRaw(t testing.TB, chain string, version int64, raw []byte)
	// DeleteAudit removes the record of chain at version.
	DeleteAudit(t testing.TB, chain string, version int64)
	// ForgetAuditHead removes the chain head kept for chain, as a store
	// written before chaining has none.
	ForgetAuditHead(t testing.TB, chain string)
}

// TamperStore is a store whose storage a test can tamper with.
type TamperStore interface {
	catalog.Store
	Tamperer
}

// RunTamper runs the hash-chain tamper suite: each case writes a tenant's
// history, tampers with its stored records and expects VerifyChain to name
// the version at fault. newStore returns a new, empty store each call.
func RunTamper(t *testing.T, newStore func(t *testing.T) TamperStore) {
	// history writes versions 1 to 5 of "acme" and returns its records.
	history := func(t *testing.T, s TamperStore) []catalog.AuditRecord {
		a := mustCreate(t, s, NewTenant("acme"))
		for i := range 4 {
			next := a.Clone()
			next.Labels = map[string]string{"step": strings.Repeat("x", i+1)}
			a = mustUpdate(t, s, next, a.Version)
		}
		recs := chainOf(t, s, "acme")
		wantIntact(t, catalog.VerifyChain("acme", recs, 5), 5)
		return recs
	}
	// edit returns rec's stored JSON with its actor changed, and change
	// applied if not nil, its hash kept or, when rehash, recomputed.
	edit := func(t *testing.T, rec catalog.AuditRecord, rehash bool, change func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(rec.Raw, &m); err != nil {
			t.Fatal(err)
		}
		m["actor"] = "mallory"
		if change != nil {
			change(m)
		}
		delete(m, "hash")
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if rehash {
			h, err := catalog.AuditHash(raw)
			if err != nil {
				t.Fatal(err)
			}
			m["hash"] = h
		} else {
			m["hash"] = rec.Hash
		}
		if raw, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		return raw
	}
	cases := []struct {
		name   string
		tamper func(t *testing.T, s TamperStore, recs []catalog.AuditRecord)
		want   int64  // a problem names this version
		says   string // and says this
	}{
		{"AlterMiddle", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.PutAuditRaw(t, "acme", 3, edit(t, recs[2], false, nil))
		}, 3, "altered"},
		{"AlterNewest", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.PutAuditRaw(t, "acme", 5, edit(t, recs[4], false, nil))
		}, 5, "altered"},
		{"AlterAndRehash", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.PutAuditRaw(t, "acme", 2, edit(t, recs[1], true, nil))
		}, 3, "not the hash"},
		{"DeleteMiddle", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.DeleteAudit(t, "acme", 3)
		}, 3, "missing"},
		{"DeleteNewest", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.DeleteAudit(t, "acme", 5)
		}, 5, "missing"},
		{"DeleteOldest", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.DeleteAudit(t, "acme", 1)
		}, 1, "missing"},
		{"Reorder", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.PutAuditRaw(t, "acme", 2, recs[3].Raw)
			s.PutAuditRaw(t, "acme", 4, recs[1].Raw)
		}, 2, "out of order"},
		// A forged newest record, chained and hashed correctly: only the
		// tenant's version gives it away.
		{"Insert", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			s.PutAuditRaw(t, "acme", 6, edit(t, recs[4], true, func(m map[string]any) {
				m["version"] = 6
				m["prev_hash"] = recs[4].Hash
			}))
		}, 6, "beyond"},
		{"StripHash", func(t *testing.T, s TamperStore, recs []catalog.AuditRecord) {
			var m map[string]any
			if err := json.Unmarshal(recs[3].Raw, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "hash")
			delete(m, "prev_hash")
			raw, _ := json.Marshal(m)
			s.PutAuditRaw(t, "acme", 4, raw)
		}, 4, "no hash"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			recs := history(t, s)
			tc.tamper(t, s, recs)
			rep := verify(t, s, "acme", 5)
			if len(rep.Problems) == 0 {
				t.Fatalf("tampering went undetected: %+v", rep)
			}
			if !slices.ContainsFunc(rep.Problems, func(p catalog.ChainProblem) bool {
				return p.Version == tc.want && strings.Contains(p.Problem, tc.says)
			}) {
				t.Fatalf("problems %v; want one at version %d saying %q", rep.Problems, tc.want, tc.says)
			}
		})
	}
	// Records written before chaining (no hash, no head): the chain starts
	// at the next record, which the store writes with no prev_hash.
	t.Run("LegacyRecordsStartTheChain", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		recs := history(t, s)
		for _, r := range recs {
			var m map[string]any
			if err := json.Unmarshal(r.Raw, &m); err != nil {
				t.Fatal(err)
			}
			delete(m, "hash")
			delete(m, "prev_hash")
			raw, _ := json.Marshal(m)
			s.PutAuditRaw(t, "acme", r.Version, raw)
		}
		s.ForgetAuditHead(t, "acme")
		a := mustGet(t, s, "acme")
		next := a.Clone()
		next.Region = "eu-west-1"
		mustUpdate(t, s, next, a.Version)
		rep := verify(t, s, "acme", 6)
		if len(rep.Problems) > 0 || rep.Unchained != 5 || rep.Records != 6 || rep.Head == "" {
			t.Fatalf("legacy history then one write: %+v; want 5 unchained records and a chained sixth, no problems", rep)
		}
		s.DeleteAudit(t, "acme", 2)
		if rep := verify(t, s, "acme", 6); len(rep.Problems) == 0 || rep.Problems[0].Version != 2 {
			t.Fatalf("a deleted legacy record went unnoticed: %+v", rep)
		}
	})
}
