package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

var (
	dbOld = tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme"}
	dbNew = tenant.Database{Engine: "postgres", Host: "db-2.internal", Port: 5432, Name: "acme"}
	t0    = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

// moveDoc is tenant acme on db with the migration m (nil: none).
func moveDoc(db tenant.Database, m *tenant.Migration) *tenant.Tenant {
	return &tenant.Tenant{ID: "acme", Hostnames: []string{"acme.example.com"}, Status: tenant.StatusActive, Database: &db, Migration: m}
}

func mig(step tenant.MoveStep, from, to tenant.Database) *tenant.Migration {
	return &tenant.Migration{Step: step, ReadOnly: step.ReadOnly(), From: from, To: to, Started: t0, By: "ops"}
}

// TestCheckMove: every step of a move, and every step out of order, as
// CheckMove judges them; a refusal is MoveConflict and names the step.
func TestCheckMove(t *testing.T) {
	t.Parallel()
	fwd := func(s tenant.MoveStep) *tenant.Migration { return mig(s, dbOld, dbNew) }
	start := &tenant.Migration{Step: tenant.MovePrepared, From: dbOld, To: dbNew} // as tcsctl sends it: no started, no by
	labelled := moveDoc(dbOld, fwd(tenant.MovePrepared))
	labelled.Labels = map[string]string{"tier": "gold"}
	for _, tc := range []struct {
		name       string
		prev, next *tenant.Tenant
		want       string // "" accepted; else a substring of the MoveConflict message
	}{
		{"plain update", moveDoc(dbOld, nil), moveDoc(dbNew, nil), ""},
		{"start", moveDoc(dbOld, nil), moveDoc(dbOld, start), ""},
		{"start after an ended move", moveDoc(dbNew, fwd(tenant.MoveComplete)), moveDoc(dbNew, &tenant.Migration{Step: tenant.MovePrepared, From: dbNew, To: dbOld}), ""},
		{"prepared → copied", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbOld, fwd(tenant.MoveCopied)), ""},
		{"copied → switched", moveDoc(dbOld, fwd(tenant.MoveCopied)), moveDoc(dbNew, fwd(tenant.MoveSwitched)), ""},
		{"switched → complete", moveDoc(dbNew, fwd(tenant.MoveSwitched)), moveDoc(dbNew, fwd(tenant.MoveComplete)), ""},
		{"prepared → cancelled", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbOld, fwd(tenant.MoveCancelled)), ""},
		{"copied → reversed", moveDoc(dbOld, fwd(tenant.MoveCopied)), moveDoc(dbOld, fwd(tenant.MoveReversed)), ""},
		{"switched → cancelled", moveDoc(dbNew, fwd(tenant.MoveSwitched)), moveDoc(dbNew, fwd(tenant.MoveCancelled)), ""},
		{"switched → reverse move", moveDoc(dbNew, fwd(tenant.MoveSwitched)), moveDoc(dbNew, &tenant.Migration{Step: tenant.MovePrepared, From: dbNew, To: dbOld}), ""},
		{"label edit during a move", moveDoc(dbOld, fwd(tenant.MovePrepared)), labelled, ""},
		{"ended record dropped", moveDoc(dbNew, fwd(tenant.MoveComplete)), moveDoc(dbNew, nil), ""},

		{"create with a move record (a restore)", nil, moveDoc(dbNew, fwd(tenant.MoveComplete)), ""},
		{"create mid-move (a restore)", nil, moveDoc(dbOld, fwd(tenant.MoveCopied)), ""},
		{"create with a cancelled move on either side", nil, moveDoc(dbNew, fwd(tenant.MoveCancelled)), ""},
		{"create with a migration elsewhere", nil, moveDoc(dbOld, fwd(tenant.MoveSwitched)), "leaves the database at postgres db-2.internal"},
		{"create with a migration to itself", nil, moveDoc(dbOld, mig(tenant.MovePrepared, dbOld, dbOld)), "goes to the database it comes from"},
		{"create with a migration and no database", nil, &tenant.Tenant{ID: "acme", Migration: fwd(tenant.MovePrepared)}, "not none"},
		{"start at switched", moveDoc(dbOld, nil), moveDoc(dbNew, fwd(tenant.MoveSwitched)), "a move starts at step PREPARED, not SWITCHED"},
		{"start from another database", moveDoc(dbOld, nil), moveDoc(dbOld, &tenant.Migration{Step: tenant.MovePrepared, From: dbNew, To: dbOld}), "starts from the current database"},
		{"start to the same database", moveDoc(dbOld, nil), moveDoc(dbOld, &tenant.Migration{Step: tenant.MovePrepared, From: dbOld, To: dbOld}), "the database it is on"},
		{"start that moves the pointer", moveDoc(dbOld, nil), moveDoc(dbNew, start), "the pointer moves at step SWITCHED"},
		{"start without a database", &tenant.Tenant{ID: "acme"}, moveDoc(dbOld, start), "has no database"},
		{"prepared → switched", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbNew, fwd(tenant.MoveSwitched)), "step PREPARED → SWITCHED is not allowed"},
		{"prepared → complete", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbOld, fwd(tenant.MoveComplete)), "PREPARED → COMPLETE is not allowed"},
		{"switched → copied", moveDoc(dbNew, fwd(tenant.MoveSwitched)), moveDoc(dbOld, fwd(tenant.MoveCopied)), "SWITCHED → COPIED is not allowed"},
		{"switched → reversed", moveDoc(dbNew, fwd(tenant.MoveSwitched)), moveDoc(dbOld, fwd(tenant.MoveReversed)), "SWITCHED → REVERSED is not allowed"},
		{"copied → switched without the pointer", moveDoc(dbOld, fwd(tenant.MoveCopied)), moveDoc(dbOld, fwd(tenant.MoveSwitched)), "must leave the database at postgres db-2.internal:5432/acme"},
		{"cancel that moves the pointer", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbNew, fwd(tenant.MoveCancelled)), "must leave the database at postgres db-1.internal"},
		{"another target mid-move", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbOld, mig(tenant.MoveCopied, dbOld, tenant.Database{Engine: "postgres", Host: "db-3", Port: 5432, Name: "acme"})), "do not change within a move"},
		{"database edit during a move", moveDoc(dbOld, fwd(tenant.MoveCopied)), moveDoc(dbNew, fwd(tenant.MoveCopied)), "its database is changed only by the move"},
		{"migration dropped mid-move", moveDoc(dbOld, fwd(tenant.MovePrepared)), moveDoc(dbOld, nil), "not dropped"},
		{"delete mid-move", moveDoc(dbNew, fwd(tenant.MoveSwitched)), nil, "before deleting it"},
		{"ended record rewritten", moveDoc(dbNew, fwd(tenant.MoveComplete)), moveDoc(dbNew, fwd(tenant.MoveCancelled)), "its move has ended (step COMPLETE)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := catalog.CheckMove(tc.prev, tc.next)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (tenant.ErrorCode(err) != tenant.MoveConflict || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("err = %v (code %q), want MoveConflict containing %q", err, tenant.ErrorCode(err), tc.want)
			}
		})
	}
}

// TestPlanWriteStampsMove: the write that starts a move stamps its Started
// and By with the write's time and actor, whatever the caller sent; later
// steps keep them; a refused step plans nothing.
func TestPlanWriteStampsMove(t *testing.T) {
	t.Parallel()
	cur := moveDoc(dbOld, nil)
	cur.Version = 3
	next := moveDoc(dbOld, &tenant.Migration{Step: tenant.MovePrepared, From: dbOld, To: dbNew, By: "forged"})
	claims := map[string]catalog.HostnameClaim{"acme.example.com": {Owner: "acme", Version: 1}}
	p, err := catalog.PlanWrite(catalog.WriteState{Current: cur, Claims: claims},
		catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: next, ExpectedVersion: 3, Actor: "alice", At: t0})
	if err != nil {
		t.Fatal(err)
	}
	if m := p.Result.Migration; m == nil || m.By != "alice" || !m.Started.Equal(t0) || m.Step != tenant.MovePrepared {
		t.Fatalf("started move = %+v; want PREPARED by alice at %v", m, t0)
	}
	copied := p.Result.Clone()
	copied.Migration.Step = tenant.MoveCopied
	p2, err := catalog.PlanWrite(catalog.WriteState{Current: p.Result, Claims: claims},
		catalog.WriteRequest{Action: catalog.ActionUpdate, Tenant: copied, ExpectedVersion: 4, Actor: "bob", At: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if m := p2.Result.Migration; m.By != "alice" || !m.Started.Equal(t0) {
		t.Errorf("COPIED step restamped the move: %+v", m)
	}
	if _, err := catalog.PlanWrite(catalog.WriteState{Current: p.Result, Claims: claims},
		catalog.WriteRequest{Action: catalog.ActionDelete, ID: "acme", Actor: "bob", At: t0}); tenant.ErrorCode(err) != tenant.MoveConflict {
		t.Errorf("delete mid-move: %v, want MoveConflict", err)
	}
}
