package storetest

import (
	"slices"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// moveTests are the tenant-move tests Run runs on every backend: the rules
// of catalog.CheckMove hold in the store, not only in the REST API.
var moveTests = []struct {
	name string
	test func(t *testing.T, s catalog.Store)
}{
	{"Move", testMove},
}

// testMove drives a move through the store step by step: the start is
// stamped with its actor and time; each step is one audited, published
// version; a step out of order, a change of database and a delete while
// the move is in progress are MoveConflict and change nothing; a label
// edit during the move is an ordinary write.
func testMove(t *testing.T, s catalog.Store) {
	created := mustCreate(t, s, NewTenant("acme"))
	from := *created.Database
	to := from
	to.Host = "db-2.us-east-1.internal"

	step := func(cur *tenant.Tenant, change func(*tenant.Tenant), actor string) *tenant.Tenant {
		t.Helper()
		next := cur.Clone()
		change(next)
		if err := tenant.Prepare(next); err != nil {
			t.Fatalf("Prepare: %v", err)
		}
		got, err := s.Update(t.Context(), next, cur.Version, actor)
		if err != nil {
			t.Fatalf("Update to step %v: %v", next.Migration, err)
		}
		return got
	}
	refused := func(cur *tenant.Tenant, what string, change func(*tenant.Tenant)) {
		t.Helper()
		heads, err := s.OutboxHeads(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		next := cur.Clone()
		change(next)
		_, err = s.Update(t.Context(), next, cur.Version, actor)
		wantCode(t, err, tenant.MoveConflict)
		wantSame(t, "tenant after a refused "+what, cur, mustGet(t, s, "acme"))
		if after, _ := s.OutboxHeads(t.Context()); !slices.Equal(heads, after) {
			t.Fatalf("a refused %s appended to the outbox: heads %v → %v", what, heads, after)
		}
	}

	prepared := step(created, func(x *tenant.Tenant) {
		x.Migration = &tenant.Migration{Step: tenant.MovePrepared, From: from, To: to, By: "forged"}
	}, "alice")
	m := prepared.Migration
	if m == nil || m.Step != tenant.MovePrepared || !m.ReadOnly || m.By != "alice" || !m.Started.Equal(prepared.UpdatedAt) ||
		!prepared.ReadOnly() || !prepared.Moving() || *prepared.Database != from || prepared.Status != tenant.StatusActive {
		t.Fatalf("started move: %+v on %+v; want PREPARED, read-only, by alice at the write's time, database unchanged, ACTIVE", m, prepared.Database)
	}

	refused(prepared, "switch before the copy", func(x *tenant.Tenant) {
		x.Migration.Step, x.Migration.ReadOnly, x.Database = tenant.MoveSwitched, false, &to
	})
	refused(prepared, "database change", func(x *tenant.Tenant) { x.Database = &to })
	refused(prepared, "drop of the migration", func(x *tenant.Tenant) { x.Migration = nil })
	if _, err := s.Delete(t.Context(), "acme", 0, actor); tenant.ErrorCode(err) != tenant.MoveConflict {
		t.Fatalf("Delete during a move: %v, want MoveConflict", err)
	}

	labelled := step(prepared, func(x *tenant.Tenant) { x.Labels = map[string]string{"tier": "gold"} }, "bob")
	copied := step(labelled, func(x *tenant.Tenant) { x.Migration.Step = tenant.MoveCopied }, "alice")
	switched := step(copied, func(x *tenant.Tenant) {
		x.Migration.Step, x.Database = tenant.MoveSwitched, &to
	}, "alice")
	if switched.ReadOnly() || !switched.Moving() || *switched.Database != to || switched.Migration.By != "alice" {
		t.Fatalf("switched: %+v on %+v; want writable, still moving, on the new database", switched.Migration, switched.Database)
	}
	complete := step(switched, func(x *tenant.Tenant) { x.Migration.Step = tenant.MoveComplete }, "alice")
	if complete.Moving() || complete.ReadOnly() || *complete.Database != to || complete.Labels["tier"] != "gold" {
		t.Fatalf("complete: %+v on %+v", complete.Migration, complete.Database)
	}
	if _, err := s.Delete(t.Context(), "acme", complete.Version, actor); err != nil {
		t.Fatalf("Delete after the move: %v", err)
	}

	// Each step is an audit record whose documents show it.
	var steps []tenant.MoveStep
	recs := history(t, s, "acme")
	for i := len(recs) - 1; i >= 0; i-- {
		if a := recs[i].After; a != nil && a.Migration != nil && recs[i].Action == catalog.ActionUpdate {
			steps = append(steps, a.Migration.Step)
		}
	}
	want := []tenant.MoveStep{tenant.MovePrepared, tenant.MovePrepared, tenant.MoveCopied, tenant.MoveSwitched, tenant.MoveComplete}
	wantSame(t, "move steps in the audit log", want, steps)
}
