// Package leasetest is the conformance suite for lease.Store: every backend
// (internal/leasetable on DynamoDB, internal/lease/memlease in memory) runs
// Run and must pass it unchanged. It checks what workers can observe
// through the interface: creation and list order, that exactly one of
// concurrent takers wins, that every owner's write is fenced by its token
// (a stale one gets lease.ErrLost and changes nothing), takeover of a lease
// as read, and the steal request flow (handover, decline).
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/internal/lease"
)

// Opener returns the store of one fresh, empty group as worker owner writes
// it; every call with the same Opener is the same group. List must order
// keys as strings.
type Opener func(owner string) lease.Store

// Run runs the suite; newGroup returns an Opener of a fresh group each call.
func Run(t *testing.T, newGroup func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"CreateAndList", testCreateAndList},
		{"CreateRefusesDuplicateParents", testCreateDuplicateParents},
		{"TakeRace", testTakeRace},
		{"OwnerWrites", testOwnerWrites},
		{"FencedByToken", testFenced},
		{"Takeover", testTakeover},
		{"StealRequest", testSteal},
		{"RemoveIfCheckpoint", testRemove},
		{"MissingLease", testMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newGroup(t))
		})
	}
}

// ignoreTime leaves RenewedAt out of comparisons: it is the writer's clock.
var ignoreTime = cmpopts.IgnoreFields(lease.Lease{}, "RenewedAt")

func list(t *testing.T, s lease.Store) []lease.Lease {
	t.Helper()
	ls, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return ls
}

func get(t *testing.T, s lease.Store, key string) lease.Lease {
	t.Helper()
	for _, l := range list(t, s) {
		if l.Key == key {
			return l
		}
	}
	t.Fatalf("no lease %q", key)
	return lease.Lease{}
}

func create(t *testing.T, s lease.Store, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if err := s.Create(t.Context(), k, nil); err != nil {
			t.Fatalf("Create(%q): %v", k, err)
		}
	}
}

func take(t *testing.T, s lease.Store, key string) lease.Lease {
	t.Helper()
	l, err := s.Take(t.Context(), get(t, s, key))
	if err != nil {
		t.Fatalf("Take(%q): %v", key, err)
	}
	return l
}

func wantLost(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, lease.ErrLost) {
		t.Errorf("%s: err = %v, want lease.ErrLost", what, err)
	}
}

func testCreateAndList(t *testing.T, open Opener) {
	s := open("a")
	if got := list(t, s); len(got) != 0 {
		t.Fatalf("a new group lists %v, want nothing", got)
	}
	create(t, s, "b", "a")
	if err := s.Create(t.Context(), "c", []string{"b", "a"}); err != nil {
		t.Fatal(err)
	}
	// A new lease's counter is the store's starting one (0 for a table,
	// higher for one that must stay above an earlier table's), the same
	// for every lease.
	got := list(t, s)
	var base int64
	if len(got) > 0 {
		base = got[0].Counter
	}
	want := []lease.Lease{{Key: "a", Counter: base}, {Key: "b", Counter: base}, {Key: "c", Parents: []string{"a", "b"}, Counter: base}}
	if diff := cmp.Diff(want, got, ignoreTime, cmpopts.EquateEmpty()); diff != "" {
		t.Fatalf("List after Create (-want +got):\n%s", diff)
	}
	// Creating again changes nothing, not even a lease taken meanwhile.
	took := take(t, s, "a")
	if err := open("b").Create(t.Context(), "a", []string{"x"}); err != nil {
		t.Fatalf("Create of an existing lease: %v", err)
	}
	if diff := cmp.Diff(took, get(t, s, "a"), ignoreTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Create of an existing lease changed it (-before +after):\n%s", diff)
	}
}

func testCreateDuplicateParents(t *testing.T, open Opener) {
	s := open("a")
	err := s.Create(t.Context(), "c", []string{"a", "a"})
	if err == nil {
		t.Fatal("Create with a parent named twice: no error")
	}
	if got := list(t, s); len(got) != 0 {
		t.Errorf("a refused Create left %v", got)
	}
}

func testTakeRace(t *testing.T, open Opener) {
	create(t, open("x"), "k")
	read := get(t, open("x"), "k")
	const n = 8
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		won    []lease.Lease
		others []error
	)
	for i := range n {
		s := open(fmt.Sprintf("w%d", i))
		wg.Go(func() {
			l, err := s.Take(context.Background(), read)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, l)
			} else {
				others = append(others, err)
			}
		})
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d of %d concurrent takes won, want exactly 1", len(won), n)
	}
	for _, err := range others {
		wantLost(t, "a losing take", err)
	}
	w := won[0]
	if w.Token == "" || w.Counter != read.Counter+1 || w.Pending != "" || w.RenewedAt.IsZero() {
		t.Errorf("the winner's lease = %+v: want a token, counter %d, no pending, a renewal time", w, read.Counter+1)
	}
	if diff := cmp.Diff(w, get(t, open("x"), "k"), ignoreTime); diff != "" {
		t.Errorf("the table differs from the winner's lease (-winner +table):\n%s", diff)
	}
}

func testOwnerWrites(t *testing.T, open Opener) {
	ctx := t.Context()
	a := open("a")
	create(t, a, "k")
	l := take(t, a, "k")
	r, err := a.Renew(ctx, "k", l.Token)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if r.Counter != l.Counter+1 || r.Owner != "a" || r.Token != l.Token {
		t.Errorf("Renew = %+v: want counter %d, owner a, the same token", r, l.Counter+1)
	}
	if err := a.Checkpoint(ctx, "k", l.Token, "42"); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	want := lease.Lease{Key: "k", Owner: "a", Token: l.Token, Checkpoint: "42", Counter: r.Counter + 1}
	if diff := cmp.Diff(want, get(t, a, "k"), ignoreTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after Checkpoint (-want +got):\n%s", diff)
	}
	if err := a.Release(ctx, "k", l.Token); err != nil {
		t.Fatalf("Release: %v", err)
	}
	want = lease.Lease{Key: "k", Checkpoint: "42", Counter: want.Counter + 1}
	if diff := cmp.Diff(want, get(t, a, "k"), ignoreTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after Release (-want +got):\n%s", diff)
	}
	l = take(t, a, "k")
	if err := a.Finish(ctx, "k", l.Token, "END"); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want = lease.Lease{Key: "k", Checkpoint: "END", Counter: l.Counter + 1}
	if diff := cmp.Diff(want, get(t, a, "k"), ignoreTime, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("after Finish (-want +got):\n%s", diff)
	}
}

// testFenced: every owner's write with a stale token, or by another worker
// with the owner's token, is ErrLost and changes nothing.
func testFenced(t *testing.T, open Opener) {
	ctx := t.Context()
	a, b := open("a"), open("b")
	create(t, a, "k")
	old := take(t, a, "k")
	if err := a.Release(ctx, "k", old.Token); err != nil {
		t.Fatal(err)
	}
	cur := take(t, a, "k")
	if err := b.RequestSteal(ctx, get(t, b, "k")); err != nil {
		t.Fatal(err)
	}
	before := get(t, a, "k")
	writes := []struct {
		name string
		s    lease.Store
		tok  string
	}{
		{"a's stale token", a, old.Token},
		{"no token", a, ""},
		{"another worker with a's token", b, cur.Token},
	}
	for _, w := range writes {
		_, err := w.s.Renew(ctx, "k", w.tok)
		wantLost(t, "Renew with "+w.name, err)
		wantLost(t, "Checkpoint with "+w.name, w.s.Checkpoint(ctx, "k", w.tok, "99"))
		wantLost(t, "Finish with "+w.name, w.s.Finish(ctx, "k", w.tok, "END"))
		wantLost(t, "Release with "+w.name, w.s.Release(ctx, "k", w.tok))
		wantLost(t, "HandOver with "+w.name, w.s.HandOver(ctx, "k", w.tok, "b"))
		wantLost(t, "Decline with "+w.name, w.s.Decline(ctx, "k", w.tok, "b"))
	}
	if diff := cmp.Diff(before, get(t, a, "k")); diff != "" {
		t.Errorf("fenced writes changed the lease (-before +after):\n%s", diff)
	}
}

// heldByA returns workers a, b and c of a group whose one lease, k, a
// has taken.
func heldByA(t *testing.T, open Opener) (a, b, c lease.Store, la lease.Lease) {
	t.Helper()
	a, b, c = open("a"), open("b"), open("c")
	create(t, a, "k")
	return a, b, c, take(t, a, "k")
}

// testTakeover: a take is conditioned only on the counter as read, so a
// worker that judged a lease expired takes it; the old owner can then
// change nothing, and a take from a stale read loses.
func testTakeover(t *testing.T, open Opener) {
	ctx := t.Context()
	a, b, c, la := heldByA(t, open)
	stale := get(t, c, "k")
	if _, err := a.Renew(ctx, "k", la.Token); err != nil {
		t.Fatal(err)
	}
	_, err := c.Take(ctx, stale)
	wantLost(t, "a take from a read before a renewal", err)
	lb, err := b.Take(ctx, get(t, b, "k"))
	if err != nil {
		t.Fatalf("taking a held lease as read: %v", err)
	}
	if lb.Owner != "b" || lb.Token == la.Token {
		t.Errorf("takeover = %+v: want owner b and a new token", lb)
	}
	_, err = a.Renew(ctx, "k", la.Token)
	wantLost(t, "the old owner's Renew", err)
	wantLost(t, "the old owner's Checkpoint", a.Checkpoint(ctx, "k", la.Token, "7"))
	if diff := cmp.Diff(lb, get(t, a, "k"), ignoreTime); diff != "" {
		t.Errorf("the old owner's writes changed the lease (-taken +now):\n%s", diff)
	}
}

func testSteal(t *testing.T, open Opener) {
	ctx := t.Context()
	a, b, c, la := heldByA(t, open)
	read := get(t, b, "k")
	if err := b.RequestSteal(ctx, read); err != nil {
		t.Fatalf("RequestSteal: %v", err)
	}
	asked := get(t, a, "k")
	if asked.Pending != "b" || asked.Counter != read.Counter || !asked.RenewedAt.Equal(read.RenewedAt) {
		t.Errorf("after RequestSteal: %+v: want pending b, counter and renewal time unchanged (%d)", asked, read.Counter)
	}
	wantLost(t, "a second request", c.RequestSteal(ctx, asked))
	wantLost(t, "a request from a stale read", c.RequestSteal(ctx, la))
	r, err := a.Renew(ctx, "k", la.Token)
	if err != nil {
		t.Fatal(err)
	}
	if r.Pending != "b" {
		t.Errorf("the owner's Renew returned pending %q, want b", r.Pending)
	}
	wantLost(t, "a handover to a worker that did not ask", a.HandOver(ctx, "k", la.Token, "c"))
	if err := a.HandOver(ctx, "k", la.Token, "b"); err != nil {
		t.Fatalf("HandOver: %v", err)
	}
	got := get(t, b, "k")
	if got.Owner != "b" || got.Pending != "" || got.Token == "" || got.Token == la.Token || got.Counter != r.Counter+1 {
		t.Errorf("after HandOver: %+v: want owner b, no pending, a new token, counter %d", got, r.Counter+1)
	}
	if _, err := b.Renew(ctx, "k", got.Token); err != nil {
		t.Errorf("the new owner's Renew with the listed token: %v", err)
	}
	_, err = a.Renew(ctx, "k", la.Token)
	wantLost(t, "the old owner's Renew after HandOver", err)

	// The owner declines a request: it is cleared (not another's), the
	// lease renewed.
	if err := c.RequestSteal(ctx, get(t, c, "k")); err != nil {
		t.Fatal(err)
	}
	wantLost(t, "declining a request another worker did not make", b.Decline(ctx, "k", got.Token, "a"))
	before := get(t, b, "k")
	if err := b.Decline(ctx, "k", got.Token, "c"); err != nil {
		t.Fatalf("Decline: %v", err)
	}
	after := get(t, b, "k")
	if after.Pending != "" || after.Owner != "b" || after.Token != got.Token || after.Counter != before.Counter+1 {
		t.Errorf("after Decline: %+v: want owner b, the same token, no pending, counter %d", after, before.Counter+1)
	}
	wantLost(t, "declining a request no longer pending", b.Decline(ctx, "k", got.Token, "c"))

	// A take clears a pending request.
	if err := c.RequestSteal(ctx, get(t, c, "k")); err != nil {
		t.Fatal(err)
	}
	if l := take(t, a, "k"); l.Pending != "" || l.Owner != "a" {
		t.Errorf("Take of a requested lease = %+v: want owner a, no pending", l)
	}
}

func testRemove(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open("a")
	create(t, s, "k", "l")
	l := take(t, s, "k")
	if err := s.Finish(ctx, "k", l.Token, "END"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key, checkpoint string
		want            bool
	}{
		{"k", "", false},
		{"k", "other", false},
		{"missing", "END", false},
		{"k", "END", true},
		{"k", "END", false},
	} {
		got, err := s.RemoveIfCheckpoint(ctx, tt.key, tt.checkpoint)
		if err != nil || got != tt.want {
			t.Errorf("RemoveIfCheckpoint(%q, %q) = %v, %v; want %v", tt.key, tt.checkpoint, got, err, tt.want)
		}
	}
	if ls := list(t, s); len(ls) != 1 || ls[0].Key != "l" {
		t.Errorf("after removing k: %+v, want only l", ls)
	}
}

func testMissing(t *testing.T, open Opener) {
	ctx := t.Context()
	s := open("a")
	_, err := s.Take(ctx, lease.Lease{Key: "nope"})
	wantLost(t, "Take of a missing lease", err)
	_, err = s.Renew(ctx, "nope", "t")
	wantLost(t, "Renew of a missing lease", err)
	wantLost(t, "RequestSteal of a missing lease", s.RequestSteal(ctx, lease.Lease{Key: "nope"}))
	if ls := list(t, s); len(ls) != 0 {
		t.Errorf("writes to a missing lease created %+v", ls)
	}
}
