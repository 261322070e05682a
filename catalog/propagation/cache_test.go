package propagation_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/propagation"
)

// countingRegistry answers its nodes (or err) and counts the reads.
type countingRegistry struct {
	reads int
	live  []propagation.Node
	err   error
}

func (r *countingRegistry) Nodes(context.Context) ([]propagation.Node, []propagation.Dropped, error) {
	r.reads++
	if r.err != nil {
		return nil, nil, r.err
	}
	return r.live, nil, nil
}

// TestCached: reads within maxAge share one read of the registry; past it,
// or after a failed read, the registry is read again.
func TestCached(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	inner := &countingRegistry{live: []propagation.Node{{Region: "eu-west-1", ID: "a", Addr: "10.0.0.1:9001"}}}
	reg := propagation.Cached(inner, time.Second, func() time.Time { return now })
	ctx := context.Background()
	for range 3 {
		live, _, err := reg.Nodes(ctx)
		if err != nil || len(live) != 1 || live[0].ID != "a" {
			t.Fatalf("Nodes = %v, %v; want node a", live, err)
		}
	}
	if inner.reads != 1 {
		t.Errorf("3 calls within maxAge read the registry %d times, want 1", inner.reads)
	}
	inner.live = append(inner.live, propagation.Node{Region: "eu-west-1", ID: "b"})
	now = now.Add(time.Second)
	if live, _, _ := reg.Nodes(ctx); len(live) != 2 || inner.reads != 2 {
		t.Errorf("after maxAge: %v, %d reads; want nodes a and b, 2 reads", live, inner.reads)
	}
	inner.err = errors.New("scan failed")
	now = now.Add(time.Second)
	if _, _, err := reg.Nodes(ctx); err == nil {
		t.Error("a failed read was answered from the cache")
	}
	inner.err = nil
	if live, _, err := reg.Nodes(ctx); err != nil || len(live) != 2 || inner.reads != 4 {
		t.Errorf("after a failed read: %v, %v, %d reads; want a fresh read (4)", live, err, inner.reads)
	}
}
