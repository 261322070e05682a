package storetest_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// The suite writes tenants from NewTenant as if they had passed
// tenant.Prepare: they must, and Prepare must have nothing to change.
func TestNewTenantIsPrepared(t *testing.T) {
	t.Parallel()
	for _, in := range []*tenant.Tenant{
		storetest.NewTenant("acme"),
		storetest.NewTenant("t-007", "t-007.example.com", "www.t-007.example.com"),
		storetest.NewTenant("racer-01", "racer-01.example.com", "contested.example.com"),
		storetest.NewTenant("ten-a", "h0.example.com", "xn--bcher-kva.example.com"),
	} {
		got := in.Clone()
		if err := tenant.Prepare(got); err != nil {
			t.Errorf("Prepare(NewTenant(%s)): %v", in.ID, err)
			continue
		}
		if diff := cmp.Diff(in, got); diff != "" {
			t.Errorf("Prepare changed NewTenant(%s) (-made +prepared):\n%s", in.ID, diff)
		}
	}
}
