package httpclient_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/internal/auth"
)

// TestPropagation: Propagation asks once; WaitPropagation long-polls until
// done, or returns the last answer when its context ends.
func TestPropagation(t *testing.T) {
	t.Parallel()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Reader, readerToken, "bob")+"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	var served atomic.Bool
	tab := propagation.NewTable(time.Hour, nil)
	tab.Heartbeat(propagation.Node{Region: "eu-west-1", ID: "node-1"})
	checker := &propagation.Checker{Registry: tab, MinPoll: time.Millisecond, MaxPoll: 5 * time.Millisecond,
		Prober: propagation.ProbeFunc(func(context.Context, propagation.Node, string, int64) (propagation.NodeStatus, error) {
			if served.Load() {
				return propagation.NodeStatus{ReplicaVersion: 3, FeedUp: true, Served: true}, nil
			}
			return propagation.NodeStatus{ReplicaVersion: 2, FeedUp: true}, nil
		})}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: store, Auth: auth.Static(creds), RateLimits: &httpapi.RateLimits{}, Propagation: checker}))
	t.Cleanup(srv.Close)
	c := client(t, srv.URL, httpclient.WithToken(readerToken))

	p, err := c.Propagation(ctxT(t), "acme", 3, 0)
	if err != nil || p.Done || len(p.Lagging) != 1 || p.Lagging[0] != "eu-west-1/node-1: replica at version 2" {
		t.Fatalf("Propagation: %+v, %v", p, err)
	}
	ctx, cancel := context.WithTimeout(ctxT(t), 400*time.Millisecond)
	defer cancel()
	p, err = c.WaitPropagation(ctx, "acme", 3)
	if !errors.Is(err, context.DeadlineExceeded) || p.Done || len(p.Lagging) != 1 {
		t.Fatalf("WaitPropagation before the node catches up: %+v, %v", p, err)
	}
	_, err = c.Propagation(ctxT(t), "acme", 0, 0)
	if httpclient.Status(err) != 400 || !strings.Contains(err.Error(), "version") {
		t.Errorf("version 0: %v, want a 400 naming version", err)
	}

	done := make(chan error, 1)
	go func() {
		p, err := c.WaitPropagation(ctxT(t), "acme", 3)
		if err == nil && !p.Done {
			err = errors.New("not done")
		}
		done <- err
	}()
	served.Store(true)
	if err := <-done; err != nil {
		t.Fatalf("WaitPropagation: %v", err)
	}
}
