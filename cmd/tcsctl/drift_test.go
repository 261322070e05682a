package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.etcd.io/bbolt"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
	"github.com/tcs-dev/tcs/tcs/drift"
)

// driftSystem is a system with tenants a…h in every region, h deleted and
// g having released www.g.example.com.
func driftSystem(t *testing.T) (*system, map[string]*tenant.Tenant) {
	t.Helper()
	s := startSystem(t, sysOptions{})
	docs := map[string]*tenant.Tenant{}
	for i, id := range []string{"aaa", "bbb", "ccc", "ddd", "eee", "fff", "ggg", "hhh"} {
		docs[id] = s.create(t, sampleTenant(id, i))
	}
	for v := int64(1); v <= 2; v++ {
		if err := s.patch(t, "ccc", v, fmt.Sprintf(`{"labels":{"n":"%d"}}`, v)); err != nil {
			t.Fatalf("patch ccc: %v", err)
		}
	}
	if err := s.patch(t, "ggg", 1, `{"hostnames":["ggg.example.com"]}`); err != nil {
		t.Fatalf("patch ggg: %v", err)
	}
	if err := s.api.Delete(context.Background(), "hhh", 0); err != nil {
		t.Fatalf("delete hhh: %v", err)
	}
	s.waitApplied(t, "ccc", 3)
	s.waitApplied(t, "ggg", 2)
	s.waitApplied(t, "hhh", 2)
	for _, id := range []string{"aaa", "bbb", "ddd", "eee", "fff"} {
		s.waitApplied(t, id, 1)
	}
	return s, docs
}

func putJSONRaw(tb testing.TB, b *bbolt.Bucket, key string, v any) {
	tb.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.Put([]byte(key), raw); err != nil {
		tb.Fatal(err)
	}
}

// injectDrift damages the replicas as outages and bad restores do, and
// returns the findings verify must report.
func injectDrift(t *testing.T, s *system, docs map[string]*tenant.Tenant) []string {
	t.Helper()
	s.replicas["us-east-1"].Edit(t, func(d, h *bbolt.Bucket) error {
		// aaa lost; bbb corrupted at its version.
		if err := d.Delete([]byte("aaa")); err != nil {
			return err
		}
		var b tenant.Tenant
		if err := json.Unmarshal(d.Get([]byte("bbb")), &b); err != nil {
			return err
		}
		b.Database.Host = "db-666.internal"
		b.Labels = map[string]string{"corrupt": "yes"}
		putJSONRaw(t, d, "bbb", b)
		return nil
	})
	s.replicas["eu-west-1"].Edit(t, func(d, h *bbolt.Bucket) error {
		// ccc rolled back to version 1; ddd.example.com moved to eee.
		putJSONRaw(t, d, "ccc", docs["ccc"])
		putJSONRaw(t, h, "ddd.example.com", tcs.HostRecord{TenantID: "eee", ClaimVersion: 1})
		return nil
	})
	s.replicas["ap-southeast-2"].Edit(t, func(d, h *bbolt.Bucket) error {
		// www.ggg.example.com, released in the truth, still maps to ggg;
		// fff.example.com lost; hhh's tombstone lost.
		putJSONRaw(t, h, "www.ggg.example.com", tcs.HostRecord{TenantID: "ggg", ClaimVersion: 2})
		if err := h.Delete([]byte("fff.example.com")); err != nil {
			return err
		}
		return d.Delete([]byte("hhh"))
	})
	return []string{
		"ap-southeast-2 missing_tenant hhh -",
		"ap-southeast-2 orphaned_hostname - www.ggg.example.com",
		"ap-southeast-2 unmapped_hostname fff fff.example.com",
		"eu-west-1 stale_version ccc -",
		"eu-west-1 wrong_owner ddd ddd.example.com",
		"us-east-1 content_mismatch bbb -",
		"us-east-1 missing_tenant aaa -",
	}
}

func findingKeys(fs []drift.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s %s %s", f.Region, f.Kind, dash(f.TenantID), dash(f.Hostname)))
	}
	sort.Strings(out)
	return out
}

// monotonic polls every region's lookups and records any answer older than
// one the same region gave before for that tenant.
type monotonic struct {
	s      *system
	hosts  []string
	mu     sync.Mutex
	seen   map[string]int64 // region/tenant → highest version served
	errs   []string
	polls  int
	cancel context.CancelFunc
	done   chan struct{}
}

func watchMonotonic(s *system, hosts []string) *monotonic {
	ctx, cancel := context.WithCancel(context.Background())
	m := &monotonic{s: s, hosts: hosts, seen: map[string]int64{}, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			m.pollOnce(ctx)
		}
	}()
	return m
}

func (m *monotonic) pollOnce(ctx context.Context) {
	for _, r := range testRegions {
		for _, h := range m.hosts {
			res, err := m.s.lookups[r].Lookup(ctx, &tcsv1.LookupRequest{Hostname: h})
			if err != nil {
				continue
			}
			key := r + "/" + res.GetTenant().GetId()
			v := res.GetTenant().GetVersion()
			m.mu.Lock()
			if v < m.seen[key] {
				m.errs = append(m.errs, fmt.Sprintf("%s served %s version %d after %d", r, h, v, m.seen[key]))
			}
			m.seen[key] = max(m.seen[key], v)
			m.polls++
			m.mu.Unlock()
		}
	}
}

func (m *monotonic) stop(t *testing.T) {
	t.Helper()
	m.cancel()
	<-m.done
	if len(m.errs) > 0 {
		t.Errorf("a region went back in time during repair:\n%s", strings.Join(m.errs, "\n"))
	}
	if m.polls == 0 {
		t.Error("no lookup answered during repair")
	}
}

// TestDriftVerifyRepair: every kind of damage done to replicas directly is
// reported by verify, fixed by repair (while lookups keep being answered,
// never with an older version than before), and verify is clean after.
func TestDriftVerifyRepair(t *testing.T) {
	t.Parallel()
	s, docs := driftSystem(t)
	s.mustTcsctl(t, 0, "verify")
	want := injectDrift(t, s, docs)

	out := s.mustTcsctl(t, 1, "verify", "-o", "json", "--settle", "50ms")
	var rep drift.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("verify -o json: %v\n%s", err, out)
	}
	if diff := cmp.Diff(want, findingKeys(rep.Findings)); diff != "" {
		t.Errorf("findings (-want +got):\n%s\n%s", diff, out)
	}
	if rep.Clean || rep.Tenants != 8 || rep.Passes < 2 {
		t.Errorf("report: clean %v, tenants %d, passes %d", rep.Clean, rep.Tenants, rep.Passes)
	}

	table := s.mustTcsctl(t, 1, "verify", "--region", "eu-west-1", "--settle", "50ms")
	for _, w := range []string{"stale_version", "wrong_owner", "ddd.example.com", "drift: 2 finding(s)"} {
		if !strings.Contains(table, w) {
			t.Errorf("verify --region eu-west-1 lacks %q:\n%s", w, table)
		}
	}
	if strings.Contains(table, "us-east-1  ") {
		t.Errorf("verify --region eu-west-1 reports other regions:\n%s", table)
	}

	out = s.mustTcsctl(t, 1, "repair", "--dry-run", "--settle", "50ms")
	if !strings.Contains(out, "would resync ccc to eu-west-1 (eu-west-1 stale_version)") {
		t.Errorf("repair --dry-run:\n%s", out)
	}
	out = s.mustTcsctl(t, 1, "verify", "-o", "json", "--settle", "50ms")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Findings) != len(want) {
		t.Errorf("a dry run repaired something: %v\n%s", err, out)
	}

	var hosts []string
	for id := range docs {
		hosts = append(hosts, id+".example.com", "www."+id+".example.com")
	}
	mon := watchMonotonic(s, hosts)
	time.Sleep(50 * time.Millisecond) // a baseline of answers before the repair
	out = s.mustTcsctl(t, 0, "repair", "--yes", "--settle", "50ms")
	mon.stop(t)
	for _, w := range []string{
		"resync aaa to us-east-1", "resync bbb to us-east-1", "resync ccc to eu-west-1", "resync ddd to eu-west-1",
		"resync fff to ap-southeast-2", "resync ggg to ap-southeast-2, settling www.ggg.example.com", "resync hhh to ap-southeast-2",
		"resynced 7 tenant(s)", "after repair: clean",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("repair output lacks %q:\n%s", w, out)
		}
	}
	if strings.Contains(out, "resync eee") {
		t.Errorf("repair resynced a tenant that had not drifted:\n%s", out)
	}
	s.mustTcsctl(t, 0, "verify")
	s.mustTcsctl(t, 0, "repair", "--yes") // nothing to do
}

// TestRepairCannot: what resync cannot fix (a region ahead of the truth, a
// tenant the truth never had) is reported, named and left alone, and
// repair exits 1.
func TestRepairCannot(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	a := s.create(t, sampleTenant("aaa", 1))
	s.waitApplied(t, "aaa", 1)
	s.replicas["us-east-1"].Edit(t, func(d, h *bbolt.Bucket) error {
		ahead := a.Clone()
		ahead.Version = 9
		putJSONRaw(t, d, "aaa", ahead)
		ghost := a.Clone()
		ghost.ID, ghost.Hostnames = "ghost", []string{"ghost.example.com"}
		putJSONRaw(t, d, "ghost", ghost)
		return nil
	})
	out := s.mustTcsctl(t, 1, "repair", "--yes", "--settle", "10ms", "--wait", "0")
	for _, w := range []string{
		"cannot repair us-east-1 ahead_version aaa: resync never rolls a version back",
		"cannot repair us-east-1 unknown_tenant ghost: the source of truth has no such tenant",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("repair lacks %q:\n%s", w, out)
		}
	}
	out = s.mustTcsctl(t, 1, "repair", "--yes", "--settle", "10ms", "-o", "json")
	var rep repairReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Unrepairable) != 2 || len(rep.Actions) != 0 {
		t.Errorf("repair -o json: %v\n%s", err, out)
	}
}
