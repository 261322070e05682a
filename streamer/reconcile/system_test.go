package reconcile_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/digest"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/streamer"
	"github.com/tcs-dev/tcs/streamer/boltlog"
	"github.com/tcs-dev/tcs/tcs/boltreplica"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// system is an embedded pipeline: a bbolt catalog, a publisher, a bbolt
// stream and an applier per region, each region's replica editable behind
// the applier's back.
type system struct {
	src      *bolt.Store
	stream   *boltlog.Log
	replicas map[string]*replicatest.LockedReplica
	regions  []string
}

func startSystem(t testing.TB, regions ...string) *system {
	t.Helper()
	dir := t.TempDir()
	src, err := bolt.Open(filepath.Join(dir, "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	log, err := boltlog.Open(filepath.Join(dir, "stream.db"), boltlog.Options{PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	s := &system{src: src, stream: log, replicas: map[string]*replicatest.LockedReplica{}, regions: regions}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("%s: %v", name, err)
			}
		}()
	}
	run("publisher", streamer.NewPublisher(streamer.PublisherConfig{Outbox: src, Stream: log, DepthInterval: -1}).Run)
	for _, region := range regions {
		path := filepath.Join(dir, "replica-"+region+".db")
		rep, err := boltreplica.Open(path, boltreplica.Options{})
		if err != nil {
			t.Fatal(err)
		}
		l := replicatest.NewLockedReplica(path, rep)
		t.Cleanup(func() { l.Close() })
		s.replicas[region] = l
		run("applier "+region, streamer.NewApplier(streamer.ApplierConfig{Region: region, Stream: log, Replica: l}).Run)
	}
	return s
}

func putJSON(b *bbolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), raw)
}

func getDoc(b *bbolt.Bucket, id string) (*tenant.Tenant, error) {
	raw := b.Get([]byte(id))
	if raw == nil {
		return nil, errors.New("no document " + id)
	}
	var t tenant.Tenant
	return &t, json.Unmarshal(raw, &t)
}

// truthTable computes the source of truth's digests from scratch.
func truthTable(tb testing.TB, src catalog.Store) digest.Table {
	tb.Helper()
	var t digest.Table
	after := ""
	for {
		page, err := src.Export(context.Background(), catalog.ListOptions{After: after, Limit: catalog.MaxExportPageSize})
		if err != nil {
			tb.Fatal(err)
		}
		for _, it := range page.Items {
			e := digest.NewEntry(it.Tenant, it.Claims)
			t[digest.Bucket(it.Tenant.ID)] ^= e.Sum(it.Tenant.ID)
		}
		if page.Next == "" {
			return t
		}
		after = page.Next
	}
}

// converged says whether the region agrees with the source of truth, and
// if not, how many buckets differ.
func (s *system) converged(tb testing.TB, region string) (bool, string) {
	tb.Helper()
	want := truthTable(tb, s.src)
	got, err := digest.ScanRegion(context.Background(), s.replicas[region], digest.ScanOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	d := digest.Diff(&want, &got.Table)
	return len(d) == 0, fmt.Sprintf("%d bucket(s) differ", len(d))
}

func (s *system) waitConverged(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	for _, r := range s.regions {
		testwait.Until(tb, timeout, 10*time.Millisecond, r+" agreeing with the source of truth", func() (bool, string) { return s.converged(tb, r) })
	}
}
