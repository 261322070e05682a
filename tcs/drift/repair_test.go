package drift

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog"
)

// TestPlanRepair: each kind of drift maps to the resync that fixes it, or
// to the reason it cannot be fixed.
func TestPlanRepair(t *testing.T) {
	t.Parallel()
	fs := []Finding{
		{Region: "r1", Kind: StaleVersion, TenantID: "aaa"},
		{Region: "r2", Kind: ContentMismatch, TenantID: "aaa"},
		{Region: "r1", Kind: WrongOwner, TenantID: "bbb", Hostname: "b.example.com", TruthOwner: "bbb", RegionOwner: "ccc", TruthClaim: 3, RegionClaim: 3},
		{Region: "r1", Kind: WrongOwner, TenantID: "bbb", Hostname: "c.example.com", TruthOwner: "bbb", RegionOwner: "ccc", TruthClaim: 3, RegionClaim: 4},
		{Region: "r2", Kind: OrphanedHostname, Hostname: "old.example.com", RegionOwner: "ddd", RegionClaim: 2},
		{Region: "r1", Kind: AheadVersion, TenantID: "eee"},
		{Region: "r1", Kind: UnknownTenant, TenantID: "fff"},
		{Region: "r1", Kind: "new_kind", TenantID: "ggg"},
	}
	actions, skipped := PlanRepair(fs)
	want := []Action{
		{TenantID: "aaa", Regions: []string{"r1", "r2"}, Reasons: []string{"r1 stale_version", "r2 content_mismatch"}},
		{TenantID: "bbb", Regions: []string{"r1"}, Reasons: []string{"r1 wrong_owner b.example.com"}},
		{TenantID: "ddd", Regions: []string{"r2"}, Hostnames: []string{"old.example.com"}, Reasons: []string{"r2 orphaned_hostname old.example.com"}},
	}
	if diff := cmp.Diff(want, actions); diff != "" {
		t.Errorf("actions (-want +got):\n%s", diff)
	}
	var got []string
	for _, u := range skipped {
		got = append(got, fmt.Sprintf("%s %s %s", u.Kind, u.TenantID, u.Hostname))
	}
	if diff := cmp.Diff([]string{"wrong_owner bbb c.example.com", "ahead_version eee ", "unknown_tenant fff ", "new_kind ggg "}, got); diff != "" {
		t.Errorf("unrepairable (-want +got):\n%s", diff)
	}
}

// TestBatches: actions are grouped by their set of regions, in the order
// of the sets, and split at catalog.MaxResyncTenants.
func TestBatches(t *testing.T) {
	t.Parallel()
	var actions []Action
	for i := range catalog.MaxResyncTenants + 2 {
		actions = append(actions, Action{TenantID: fmt.Sprintf("t%05d", i), Regions: []string{"r2"}})
	}
	actions = append(actions,
		Action{TenantID: "aaa", Regions: []string{"r1", "r2"}, Hostnames: []string{"old.example.com"}},
		Action{TenantID: "bbb", Regions: []string{"r1"}})
	got := Batches(actions)
	var shape []string
	for _, b := range got {
		shape = append(shape, fmt.Sprintf("%v %d %s…%s", b.Regions, len(b.Tenants), b.Tenants[0].ID, b.Tenants[len(b.Tenants)-1].ID))
	}
	want := []string{"[r1] 1 bbb…bbb", "[r1 r2] 1 aaa…aaa", "[r2] 1000 t00000…t00999", "[r2] 2 t01000…t01001"}
	if diff := cmp.Diff(want, shape); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]catalog.ResyncRequest{{ID: "aaa", Hostnames: []string{"old.example.com"}}}, got[1].Tenants); diff != "" {
		t.Errorf("settled hostnames (-want +got):\n%s", diff)
	}
	if len(Batches(nil)) != 0 {
		t.Error("Batches(nil) is not empty")
	}
}
