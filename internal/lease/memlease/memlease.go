// Package memlease is an in-memory lease.Store, for the embedded backend
// family (tcs-dev runs every worker in one process): the same conditions,
// results and errors as the DynamoDB table (internal/leasetable), checked
// by the same suite (internal/lease/leasetest). A Table holds any number of
// groups; it is safe for concurrent use.
package memlease

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/internal/lease"
)

// Table is an in-memory lease table of any number of groups.
type Table struct {
	// Now stamps RenewedAt; nil means time.Now.
	Now func() time.Time
	// CounterBase is the counter of every lease Create makes. Counters
	// only grow while the table lives; a table that takes over from an
	// earlier one (its process restarted) must start above every counter
	// that one reached, or the fencing tokens built from counters
	// (tcs/work) would go back: NewFromClock sets it from the clock.
	CounterBase int64

	mu     sync.Mutex
	groups map[string]map[string]lease.Lease // group → key → lease
}

// New returns an empty table whose clock is now (nil: time.Now).
func New(now func() time.Time) *Table {
	return &Table{Now: now}
}

// NewFromClock returns an empty table (clock time.Now) whose counters start
// at the current Unix time in microseconds: above the counters of any table
// made earlier on this machine, which grow by one a write (a lease written
// a million times a second for as long as the earlier table lived would be
// needed to catch up), so that fencing tokens keep growing across restarts
// of a process that holds its leases in memory.
func NewFromClock() *Table {
	return &Table{CounterBase: time.Now().UnixMicro()}
}

// Store returns group's leases as worker owner writes them. compare orders
// List's leases by key; nil compares strings.
func (t *Table) Store(group, owner string, compare func(a, b string) int) lease.Store {
	if compare == nil {
		compare = strings.Compare
	}
	return &store{t: t, group: group, owner: owner, compare: compare}
}

type store struct {
	t            *Table
	group, owner string
	compare      func(a, b string) int
}

var _ lease.Store = (*store)(nil)

func (t *Table) now() time.Time {
	if t.Now == nil {
		return time.Now()
	}
	return t.Now()
}

// clone copies l so that callers never share its Parents with the table.
func clone(l lease.Lease) lease.Lease {
	l.Parents = slices.Clone(l.Parents)
	return l
}

func (s *store) List(ctx context.Context) ([]lease.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list leases of group %q: %w", s.group, err)
	}
	s.t.mu.Lock()
	leases := make([]lease.Lease, 0, len(s.t.groups[s.group]))
	for _, l := range s.t.groups[s.group] {
		leases = append(leases, clone(l))
	}
	s.t.mu.Unlock()
	slices.SortFunc(leases, func(a, b lease.Lease) int { return s.compare(a.Key, b.Key) })
	return leases, nil
}

func (s *store) Create(ctx context.Context, key string, parents []string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("create lease %s/%s: %w", s.group, key, err)
	}
	if err := lease.CheckCreate(key, parents); err != nil {
		return fmt.Errorf("create lease in group %q: %w", s.group, err)
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.t.groups == nil {
		s.t.groups = map[string]map[string]lease.Lease{}
	}
	g := s.t.groups[s.group]
	if g == nil {
		g = map[string]lease.Lease{}
		s.t.groups[s.group] = g
	}
	if _, ok := g[key]; ok {
		return nil
	}
	l := lease.Lease{Key: key, Counter: s.t.CounterBase}
	if len(parents) > 0 {
		l.Parents = slices.Clone(parents)
		slices.Sort(l.Parents)
	}
	g[key] = l
	return nil
}

func (s *store) RemoveIfCheckpoint(ctx context.Context, key, checkpoint string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("remove lease %s/%s: %w", s.group, key, err)
	}
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	l, ok := s.t.groups[s.group][key]
	if !ok || l.Checkpoint != checkpoint {
		return false, nil
	}
	delete(s.t.groups[s.group], key)
	return true, nil
}

// update changes key's lease with change if cond holds for it (a missing
// lease fails every condition, as DynamoDB's conditional updates do), and
// returns the lease as written. A renewal of any kind bumps the counter.
func (s *store) update(ctx context.Context, op, key string, bump bool, cond func(lease.Lease) bool, change func(*lease.Lease)) (lease.Lease, error) {
	if err := ctx.Err(); err != nil {
		return lease.Lease{}, fmt.Errorf("%s lease %s/%s: %w", op, s.group, key, err)
	}
	now := s.t.now()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	l, ok := s.t.groups[s.group][key]
	if !ok || !cond(l) {
		return lease.Lease{}, lease.ErrLost
	}
	change(&l)
	if bump {
		l.Counter++
		l.RenewedAt = now.UTC()
	}
	s.t.groups[s.group][key] = l
	return clone(l), nil
}

func (s *store) owned(token string) func(lease.Lease) bool {
	return func(l lease.Lease) bool { return l.Owner == s.owner && l.Token == token }
}

func (s *store) Take(ctx context.Context, read lease.Lease) (lease.Lease, error) {
	tok := lease.NewToken()
	return s.update(ctx, "take", read.Key, true,
		func(l lease.Lease) bool { return l.Counter == read.Counter },
		func(l *lease.Lease) { l.Owner, l.Token, l.Pending = s.owner, tok, "" })
}

func (s *store) Renew(ctx context.Context, key, token string) (lease.Lease, error) {
	return s.update(ctx, "renew", key, true, s.owned(token), func(*lease.Lease) {})
}

func (s *store) Checkpoint(ctx context.Context, key, token, checkpoint string) error {
	_, err := s.update(ctx, "checkpoint", key, true, s.owned(token), func(l *lease.Lease) { l.Checkpoint = checkpoint })
	return err
}

func (s *store) Finish(ctx context.Context, key, token, checkpoint string) error {
	_, err := s.update(ctx, "finish", key, true, s.owned(token), func(l *lease.Lease) {
		l.Checkpoint, l.Owner, l.Token, l.Pending = checkpoint, "", "", ""
	})
	return err
}

func (s *store) Release(ctx context.Context, key, token string) error {
	_, err := s.update(ctx, "release", key, true, s.owned(token), func(l *lease.Lease) {
		l.Owner, l.Token, l.Pending = "", "", ""
	})
	return err
}

func (s *store) HandOver(ctx context.Context, key, token, to string) error {
	tok := lease.NewToken()
	owned := s.owned(token)
	_, err := s.update(ctx, "hand over", key, true,
		func(l lease.Lease) bool { return owned(l) && l.Pending == to },
		func(l *lease.Lease) { l.Owner, l.Token, l.Pending = to, tok, "" })
	return err
}

func (s *store) Decline(ctx context.Context, key, token, who string) error {
	owned := s.owned(token)
	_, err := s.update(ctx, "decline", key, true,
		func(l lease.Lease) bool { return owned(l) && l.Pending == who },
		func(l *lease.Lease) { l.Pending = "" })
	return err
}

func (s *store) RequestSteal(ctx context.Context, read lease.Lease) error {
	_, err := s.update(ctx, "request", read.Key, false,
		func(l lease.Lease) bool { return l.Counter == read.Counter && l.Owner == read.Owner && l.Pending == "" },
		func(l *lease.Lease) { l.Pending = s.owner })
	return err
}
