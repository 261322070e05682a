package dynamo_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// hostSet returns n hostnames of the form <prefix>NNN.example.com, each at
// claim version cv.
func hostSet(prefix string, n int, cv int64) map[string]int64 {
	m := make(map[string]int64, n)
	for i := range n {
		m[fmt.Sprintf("%s%03d.example.com", prefix, i)] = cv
	}
	return m
}

// bigHistory is the worst case for one transaction: tenant big holds 100
// hostnames (c…), moves to 100 others (a…), then to 100 more (b…). A
// replica that gets v1 and then v3 must write v3's document, claim 100
// hostnames, release 100 it never saw and unmap the 100 that v1 held: 301
// items.
func bigHistory() (v1, v2, v3, v4 *tenant.ChangeEvent) {
	v1 = replicatest.Event("big", 1, hostSet("c", 100, 1), nil)
	v2 = replicatest.Event("big", 2, hostSet("a", 100, 1), hostSet("c", 100, 2))
	v3 = replicatest.Event("big", 3, hostSet("b", 100, 1), hostSet("a", 100, 2))
	v4 = replicatest.Event("big", 4, hostSet("b", 100, 1), nil)
	return v1, v2, v3, v4
}

// reference returns a bbolt replica, the reference implementation of the
// apply rules.
func reference(t *testing.T) *boltreplica.Replica {
	t.Helper()
	r, err := boltreplica.Open(filepath.Join(t.TempDir(), "replica.db"), boltreplica.Options{})
	if err != nil {
		t.Fatalf("boltreplica.Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// wantSameContents checks that r holds what ref holds.
func wantSameContents(t *testing.T, ref, r scanner) {
	t.Helper()
	if diff := cmp.Diff(allDocs(t, ref, 0), allDocs(t, r, 7), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("documents (-reference +dynamo):\n%s", diff)
	}
	if diff := cmp.Diff(allHosts(t, ref, 0), allHosts(t, r, 0), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("hostname records (-reference +dynamo):\n%s", diff)
	}
}

// wantNoPending checks that tenant id's item has no unfinished work.
func wantNoPending(t *testing.T, c *dynamodb.Client, table, id string) {
	t.Helper()
	out, err := c.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(table), Key: map[string]types.AttributeValue{"PK": &types.AttributeValueMemberS{Value: "T#" + id}}, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem: %v", err)
	}
	if _, ok := out.Item["pending"]; ok {
		t.Errorf("tenant %s still has pending work", id)
	}
}

// TestSplitApply delivers events too big for one transaction and checks
// that the replica ends as the reference does, with the same ApplyResults.
func TestSplitApply(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	v1, v2, v3, v4 := bigHistory()
	orders := map[string][]*tenant.ChangeEvent{
		"v1 v3 v2 v4": {v1, v3, v2, v4},
		"v3 v1 v2":    {v3, v1, v2},
		"v2 v1 v3 v3": {v2, v1, v3, v3},
	}
	for name, evs := range orders {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ref, table := reference(t), newTable(t, c)
			r := openOn(t, c, table, replicadynamo.Config{})
			for _, ev := range evs {
				want, err := ref.Apply(t.Context(), ev)
				if err != nil {
					t.Fatalf("reference Apply(v%d): %v", ev.Version, err)
				}
				got, err := r.Apply(t.Context(), ev)
				if err != nil {
					t.Fatalf("Apply(v%d): %v", ev.Version, err)
				}
				if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("Apply(v%d) (-reference +dynamo):\n%s", ev.Version, diff)
				}
			}
			wantSameContents(t, ref, r)
			wantNoPending(t, c, table, "big")
			newest := evs[0]
			for _, ev := range evs {
				if ev.Version > newest.Version {
					newest = ev
				}
			}
			wantLookup(t, r, "b042.example.com", newest.Tenant)
			wantLookup(t, r, "a042.example.com", nil)
			wantLookup(t, r, "c042.example.com", nil)
		})
	}
}

// TestSplitBoundary checks where an apply starts to split: the document and
// 99 hostname records fit one transaction; one more hostname takes three
// (the document with its pending work, 99 records, the last record with the
// removal of pending).
func TestSplitBoundary(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	for _, tt := range []struct{ hostnames, transactions int }{{99, 1}, {100, 3}} {
		f := newFaulty(c)
		r := openOn(t, f, newTable(t, c), replicadynamo.Config{})
		ev := replicatest.Event("acme", 1, hostSet("h", tt.hostnames, 1), nil)
		res, err := r.Apply(t.Context(), ev)
		if err != nil {
			t.Fatalf("Apply with %d hostnames: %v", tt.hostnames, err)
		}
		if !res.Applied || len(res.Hostnames) != tt.hostnames {
			t.Errorf("Apply with %d hostnames = applied %v, %d hostnames", tt.hostnames, res.Applied, len(res.Hostnames))
		}
		if n := f.count(mTransact); n != tt.transactions {
			t.Errorf("Apply with %d hostnames took %d transactions, want %d", tt.hostnames, n, tt.transactions)
		}
		if got := len(allHosts(t, r, 0)); got != tt.hostnames {
			t.Errorf("%d hostname records after Apply with %d hostnames", got, tt.hostnames)
		}
		wantLookup(t, r, "h000.example.com", ev.Tenant)
	}
}

// TestSplitApplyInterrupted fails a split apply after its document
// committed and checks that lookups stay sane meanwhile and that the
// redelivery of the event, or the tenant's next event, finishes the work.
func TestSplitApplyInterrupted(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	v1, _, v3, v4 := bigHistory()
	tests := []struct {
		name  string
		then  []*tenant.ChangeEvent // delivered concurrently after the failure
		final *tenant.ChangeEvent
	}{
		{"redelivered", []*tenant.ChangeEvent{v3}, v3},
		{"next event", []*tenant.ChangeEvent{v4}, v4},
		{"redelivered twice at once", []*tenant.ChangeEvent{v3, v3}, v3},
		{"redelivered with the next event", []*tenant.ChangeEvent{v3, v4}, v4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ref, table := reference(t), newTable(t, c)
			for _, ev := range []*tenant.ChangeEvent{v1, v3, v4} {
				if ev == v4 && tt.final != v4 {
					break
				}
				if _, err := ref.Apply(t.Context(), ev); err != nil {
					t.Fatalf("reference Apply(v%d): %v", ev.Version, err)
				}
			}
			f := newFaulty(c)
			r := openOn(t, f, table, replicadynamo.Config{MaxAttempts: 3})
			if _, err := r.Apply(t.Context(), v1); err != nil {
				t.Fatalf("Apply(v1): %v", err)
			}
			// The document commits; every transaction after it fails.
			docCall := f.count(mTransact) + 1
			f.before = func(method string, call int) {
				if method == mTransact && call == docCall+1 {
					f.failAlways(mTransact, serverError(mTransact))
				}
			}
			if _, err := r.Apply(t.Context(), v3); tenant.ErrorCode(err) != tenant.Unavailable {
				t.Fatalf("Apply(v3) failing after its document: %v, want Unavailable", err)
			}
			clean := openOn(t, c, table, replicadynamo.Config{})
			wantDoc(t, clean, "big", v3.Tenant)
			// v3's claims are not written yet: its hostnames do not resolve
			// (as if v3 had not arrived); v1's no longer resolve either, since
			// v3's document does not list them.
			wantLookup(t, clean, "b000.example.com", nil)
			wantLookup(t, clean, "c000.example.com", nil)

			var wg sync.WaitGroup
			for _, ev := range tt.then {
				wg.Go(func() {
					if _, err := clean.Apply(context.Background(), ev); err != nil {
						t.Errorf("Apply(v%d) after the failure: %v", ev.Version, err)
					}
				})
			}
			wg.Wait()
			wantSameContents(t, ref, clean)
			wantNoPending(t, c, table, "big")
			wantLookup(t, clean, "b099.example.com", tt.final.Tenant)
		})
	}
}

// TestReleasesOnlyOverManyTransactions delivers a stale event whose 150
// releases (more than a transaction holds) are all still to apply.
func TestReleasesOnlyOverManyTransactions(t *testing.T) {
	t.Parallel()
	c := newClient(t)
	ref := reference(t)
	f := newFaulty(c)
	r := openOn(t, f, newTable(t, c), replicadynamo.Config{})
	newest := replicatest.Event("many", 5, map[string]int64{"keep.example.com": 1}, nil)
	stale := replicatest.Event("many", 4, map[string]int64{"keep.example.com": 1}, hostSet("gone", 150, 2))
	for _, ev := range []*tenant.ChangeEvent{newest, stale} {
		want, err := ref.Apply(t.Context(), ev)
		if err != nil {
			t.Fatalf("reference Apply: %v", err)
		}
		got, err := r.Apply(t.Context(), ev)
		if err != nil {
			t.Fatalf("Apply(v%d): %v", ev.Version, err)
		}
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Apply(v%d) (-reference +dynamo):\n%s", ev.Version, diff)
		}
	}
	if n := f.count(mTransact); n != 3 {
		t.Errorf("%d transactions, want 3 (the create, then 150 releases in 100 and 50)", n)
	}
	wantSameContents(t, ref, r)
	var _ tcs.Scanner = ref
}
