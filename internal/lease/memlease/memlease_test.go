package memlease_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
	"github.com/tcs-dev/tcs/internal/lease/leasetest"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
)

func TestConformance(t *testing.T) {
	// One table for every group: groups must not see each other.
	table := memlease.New(nil)
	var n atomic.Int64
	leasetest.Run(t, func(t *testing.T) leasetest.Opener {
		group := fmt.Sprintf("group-%d", n.Add(1))
		return func(owner string) lease.Store { return table.Store(group, owner, nil) }
	})
}

func TestClockStampsRenewals(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := memlease.New(func() time.Time { return at }).Store("g", "a", nil)
	if err := s.Create(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	l, err := s.Take(t.Context(), lease.Lease{Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if !l.RenewedAt.Equal(at) {
		t.Errorf("RenewedAt = %v, want the injected clock's %v", l.RenewedAt, at)
	}
}

func TestCompareOrdersList(t *testing.T) {
	t.Parallel()
	byLength := func(a, b string) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return map[bool]int{true: -1, false: 1}[a < b]
	}
	s := memlease.New(nil).Store("g", "a", byLength)
	for _, k := range []string{"10", "9", "100", "2"} {
		if err := s.Create(t.Context(), k, nil); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.Key)
	}
	if fmt.Sprint(got) != "[2 9 10 100]" {
		t.Errorf("List order = %v, want [2 9 10 100]", got)
	}
}

// TestConformanceFromClock: a table whose counters start from the clock
// keeps every rule of the suite.
func TestConformanceFromClock(t *testing.T) {
	table := memlease.NewFromClock()
	var n atomic.Int64
	leasetest.Run(t, func(t *testing.T) leasetest.Opener {
		group := fmt.Sprintf("group-%d", n.Add(1))
		return func(owner string) lease.Store { return table.Store(group, owner, nil) }
	})
}

// TestCountersGrowAcrossTables: a table made after another (its process
// restarted) starts its counters above every counter the earlier one
// reached, so fencing tokens taken from counters keep growing.
func TestCountersGrowAcrossTables(t *testing.T) {
	t.Parallel()
	first := memlease.NewFromClock().Store("g", "a", nil)
	if err := first.Create(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	read, err := first.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l, err := first.Take(t.Context(), read[0])
	if err != nil {
		t.Fatal(err)
	}
	for range 1000 { // far more writes than a lease sees in a millisecond
		if l, err = first.Renew(t.Context(), "k", l.Token); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Millisecond) // a restart takes longer than that
	second := memlease.NewFromClock().Store("g", "a", nil)
	if err := second.Create(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	if read, err = second.List(t.Context()); err != nil {
		t.Fatal(err)
	}
	l2, err := second.Take(t.Context(), read[0])
	if err != nil {
		t.Fatal(err)
	}
	if l2.Counter <= l.Counter {
		t.Errorf("the second table's first take has counter %d, not above the first table's last %d", l2.Counter, l.Counter)
	}
	zero := memlease.New(nil).Store("g", "a", nil)
	if err := zero.Create(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	if read, err = zero.List(t.Context()); err != nil || read[0].Counter != 0 {
		t.Errorf("New's lease: %+v, %v; want counter 0", read, err)
	}
}
