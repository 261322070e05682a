package lease_test

import (
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
)

// TestRenewTimeout: a renewal is bounded by the renewal interval, a fifth
// of the lease, and never by less than a second.
func TestRenewTimeout(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]time.Duration{
		10 * time.Second: 2 * time.Second,
		time.Minute:      12 * time.Second,
		2 * time.Second:  time.Second,
		0:                time.Second,
	} {
		if got := lease.RenewTimeout(d); got != want {
			t.Errorf("RenewTimeout(%v) = %v, want %v", d, got, want)
		}
	}
}
