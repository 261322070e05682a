package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/propagation"
)

// fakePropagation is a settable node set behind a real Checker.
type fakePropagation struct {
	mu    sync.Mutex
	st    propagation.NodeStatus
	delay time.Duration // each probe's
}

func (f *fakePropagation) set(st propagation.NodeStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
}

func (f *fakePropagation) checker() *propagation.Checker {
	tab := propagation.NewTable(time.Hour, nil)
	tab.Heartbeat(propagation.Node{Region: "eu-west-1", ID: "node-1", Addr: "127.0.0.1:9002"})
	return &propagation.Checker{
		Regions:  []string{"eu-west-1"},
		Registry: tab,
		MinPoll:  time.Millisecond, MaxPoll: 2 * time.Millisecond,
		Prober: propagation.ProbeFunc(func(ctx context.Context, _ propagation.Node, _ string, _ int64) (propagation.NodeStatus, error) {
			f.mu.Lock()
			st, delay := f.st, f.delay
			f.mu.Unlock()
			select {
			case <-time.After(delay):
				return st, nil
			case <-ctx.Done():
				return propagation.NodeStatus{}, ctx.Err()
			}
		}),
	}
}

func decodePropagation(t *testing.T, r result) propagationBody {
	t.Helper()
	var b propagationBody
	if err := json.Unmarshal(r.body, &b); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	return b
}

func TestPropagation(t *testing.T) {
	t.Parallel()
	f := &fakePropagation{}
	f.set(propagation.NodeStatus{ReplicaVersion: 2, CachedVersion: 1, FeedVersion: 1, FeedUp: true})
	h := newHarnessConfig(t, func(c *Config) { c.Propagation = f.checker() })

	// Not there yet: 200, done false, the node named.
	r := h.mustDo(call{method: "GET", path: "/v1/tenants/acme/propagation?version=2", token: readerToken}, http.StatusOK)
	b := decodePropagation(t, r)
	if b.Done || len(b.Lagging) != 1 || b.Lagging[0] != "eu-west-1/node-1: cache holds version 1" {
		t.Errorf("before: done %v, lagging %q", b.Done, b.Lagging)
	}
	if len(b.Regions) != 1 || len(b.Regions[0].Nodes) != 1 || b.Regions[0].Nodes[0].Addr != "127.0.0.1:9002" {
		t.Errorf("regions %+v", b.Regions)
	}
	// A bounded wait that ends: still 200, done false.
	r = h.mustDo(call{method: "GET", path: "/v1/tenants/acme/propagation?version=2&wait=20ms", token: readerToken}, http.StatusOK)
	if b := decodePropagation(t, r); b.Done || len(b.Lagging) != 1 {
		t.Errorf("after a wait: done %v, lagging %q", b.Done, b.Lagging)
	}

	// A long poll returns once the node catches up.
	done := make(chan result, 1)
	go func() {
		done <- h.do(call{method: "GET", path: "/v1/tenants/acme/propagation?version=2&wait=20s", token: readerToken})
	}()
	f.set(propagation.NodeStatus{ReplicaVersion: 2, FeedVersion: 2, FeedUp: true, Served: true,
		Clients: propagation.ClientCounts{Acknowledged: 3, NotAcking: 1}})
	r = <-done
	if r.status != http.StatusOK {
		t.Fatalf("long poll: %d %s", r.status, r.body)
	}
	b = decodePropagation(t, r)
	if !b.Done || len(b.Lagging) != 0 || b.Regions[0].Clients != (propagation.ClientCounts{Acknowledged: 3, NotAcking: 1}) {
		t.Errorf("long poll: %s", r.body)
	}
	// The two waits are counted by outcome (a histogram's count); the
	// checks without wait are not waits.
	for outcome, want := range map[string]float64{"done": 1, "lagging": 1, "error": 0, "canceled": 0} {
		if got := counterValue(t, h, "tcs_catalog_propagation_wait_seconds", map[string]string{"outcome": outcome}); got != want {
			t.Errorf("propagation waits %s = %v, want %v", outcome, got, want)
		}
	}
}

func TestPropagationRejects(t *testing.T) {
	t.Parallel()
	f := &fakePropagation{}
	h := newHarnessConfig(t, func(c *Config) { c.Propagation = f.checker() })
	for _, tc := range []struct {
		name, path, token string
		status            int
		field             string
	}{
		{"no credentials", "/v1/tenants/acme/propagation?version=1", "", http.StatusUnauthorized, ""},
		{"bad token", "/v1/tenants/acme/propagation?version=1", "nope", http.StatusUnauthorized, ""},
		{"no version", "/v1/tenants/acme/propagation", readerToken, http.StatusBadRequest, "version"},
		{"version 0", "/v1/tenants/acme/propagation?version=0", readerToken, http.StatusBadRequest, "version"},
		{"version not a number", "/v1/tenants/acme/propagation?version=abc", readerToken, http.StatusBadRequest, "version"},
		{"negative version", "/v1/tenants/acme/propagation?version=-4", readerToken, http.StatusBadRequest, "version"},
		{"bad wait", "/v1/tenants/acme/propagation?version=1&wait=soon", readerToken, http.StatusBadRequest, "wait"},
		{"wait too long", "/v1/tenants/acme/propagation?version=1&wait=1h", readerToken, http.StatusBadRequest, "wait"},
		{"negative wait", "/v1/tenants/acme/propagation?version=1&wait=-1s", readerToken, http.StatusBadRequest, "wait"},
		{"bad id", "/v1/tenants/NO/propagation?version=1", readerToken, http.StatusUnprocessableEntity, "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(call{method: "GET", path: tc.path, token: tc.token})
			if r.status != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.path, r.status, r.body, tc.status)
			}
			p := r.problem(t)
			if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
				t.Errorf("problem %+v does not name %s", p, tc.field)
			}
		})
	}
	// The admin role may read too; a reader may not write, so no write
	// route is needed here.
	h.mustDo(call{method: "GET", path: "/v1/tenants/acme/propagation?version=1", token: adminToken}, http.StatusOK)

	// Without a registry: 501 saying so.
	bare := newHarness(t)
	r := bare.do(call{method: "GET", path: "/v1/tenants/acme/propagation?version=1", token: readerToken})
	if r.status != http.StatusNotImplemented || !strings.Contains(r.problem(t).Detail, "registry") {
		t.Errorf("no registry: %d %s", r.status, r.body)
	}
}

// failingRegistry is a node registry that cannot be read.
type failingRegistry struct{}

func (failingRegistry) Nodes(context.Context) ([]propagation.Node, []propagation.Dropped, error) {
	return nil, nil, errors.New("nodes table unreadable")
}

// TestPropagationSlowNodes: a wait shorter than the nodes take to answer
// still answers where the change stands; nodes that cannot be asked are a
// 503 naming why (not a source-of-truth outage).
func TestPropagationSlowNodes(t *testing.T) {
	t.Parallel()
	f := &fakePropagation{delay: 100 * time.Millisecond}
	f.set(propagation.NodeStatus{ReplicaVersion: 2, CachedVersion: 1, FeedVersion: 1, FeedUp: true})
	h := newHarnessConfig(t, func(c *Config) { c.Propagation = f.checker() })
	r := h.mustDo(call{method: "GET", path: "/v1/tenants/acme/propagation?version=2&wait=5ms", token: readerToken}, http.StatusOK)
	if b := decodePropagation(t, r); b.Done || len(b.Lagging) != 1 || b.TenantID != "acme" {
		t.Errorf("wait shorter than a probe: %s", r.body)
	}

	broken := f.checker()
	broken.Registry = failingRegistry{}
	hb := newHarnessConfig(t, func(c *Config) { c.Propagation = broken })
	r = hb.do(call{method: "GET", path: "/v1/tenants/acme/propagation?version=2", token: readerToken})
	p := r.problem(t)
	if r.status != http.StatusServiceUnavailable || !strings.HasSuffix(p.Type, ":nodes_unavailable") || !strings.Contains(p.Detail, "nodes table unreadable") {
		t.Errorf("unreadable registry: %d %+v", r.status, p)
	}
}
