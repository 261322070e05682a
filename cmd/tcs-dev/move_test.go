package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// TestMoveEndToEnd: a tenant move on the embedded topology (see moveEndToEnd).
func TestMoveEndToEnd(t *testing.T) {
	t.Parallel()
	moveEndToEnd(t, start(t, "--seed=false"))
}

// TestMoveEndToEndAWS: the same on the AWS topology (DynamoDB source of
// truth and replicas, Kinesis, SNS/SQS invalidations). tcs-dev's barrier
// asks its lookup servers in process; cmd/catalog's TestMoveAWS covers the
// DynamoDB node registry and ReplicaAdmin probes.
func TestMoveEndToEndAWS(t *testing.T) {
	s, _ := startAWS(t, "--seed=false")
	moveEndToEnd(t, s)
}

// moveEndToEnd moves a tenant through the catalog's REST API with the
// barrier of the real pipeline: when the copy runs, every region's lookup
// already serves the tenant read-only (still ACTIVE, still on the old
// database); when the move completes, every region serves the new database,
// writable; each step is in the tenant's audit history.
func moveEndToEnd(t *testing.T, s *system) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api := s.api(t, adm)
	doc := `{"id":"mover","hostnames":["mover.example.com"],"database":{"engine":"postgres","host":"db-1.internal","port":5432,"name":"mover"}}`
	if _, err := api.Create(ctx, json.RawMessage(doc)); err != nil {
		t.Fatal(err)
	}
	lookupAll := func(check func(region string, got *tenant.Tenant) error) {
		t.Helper()
		for region, c := range s.clients {
			res, err := c.Lookup(ctx, &tcsv1.LookupRequest{Hostname: "mover.example.com"})
			if err != nil {
				t.Fatalf("%s: %v", region, err)
			}
			got, err := tcsv1.TenantFromProto(res.GetTenant())
			if err != nil {
				t.Fatal(err)
			}
			if err := check(region, got); err != nil {
				t.Error(err)
			}
		}
	}
	copies := 0
	m := &move.Mover{Catalog: api, MaxLag: time.Minute, Copy: func(_ context.Context, job move.CopyJob) error {
		copies++
		if job.From.Host != "db-1.internal" || job.To.Host != "db-2.internal" || job.To.Name != "mover" {
			t.Errorf("copy job %+v", job)
		}
		// The barrier has held: no region may still let compute nodes write.
		lookupAll(func(region string, got *tenant.Tenant) error {
			if !got.ReadOnly() || got.Database.Host != "db-1.internal" || got.Status != tenant.StatusActive || got.Migration.Step != tenant.MovePrepared {
				return fmt.Errorf("%s serves %+v on %+v during the copy; want read-only, ACTIVE, PREPARED, on db-1", region, got.Migration, got.Database)
			}
			return nil
		})
		return nil
	}}
	began := time.Now()
	done, err := m.Run(ctx, "mover", json.RawMessage(`{"host":"db-2.internal"}`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("move: 4 writes and 3 barrier waits in %v", time.Since(began).Round(time.Millisecond))
	if copies != 1 || done.Migration.Step != tenant.MoveComplete || done.Database.Host != "db-2.internal" {
		t.Fatalf("after the move: %d copies, %+v on %+v", copies, done.Migration, done.Database)
	}
	// The barrier held at the SWITCHED version: every region serves the
	// new database already, writable.
	lookupAll(func(region string, got *tenant.Tenant) error {
		if got.Version < done.Version-1 || got.ReadOnly() || got.Database.Host != "db-2.internal" {
			return fmt.Errorf("%s serves version %d on %+v (read-only %v) once the move is complete; want ≥ %d on db-2, writable", region, got.Version, got.Database, got.ReadOnly(), done.Version-1)
		}
		return nil
	})
	s.eventually(t, "mover.example.com", atVersion("mover", done.Version))

	page, err := api.History(ctx, "mover", "", 50)
	if err != nil {
		t.Fatal(err)
	}
	var steps []tenant.MoveStep
	for i := len(page.Records) - 1; i >= 0; i-- {
		if a := page.Records[i].After; a != nil && a.Migration != nil {
			steps = append(steps, a.Migration.Step)
		}
	}
	if want := []tenant.MoveStep{tenant.MovePrepared, tenant.MoveCopied, tenant.MoveSwitched, tenant.MoveComplete}; fmt.Sprint(steps) != fmt.Sprint(want) {
		t.Errorf("audited steps %v, want %v", steps, want)
	}
}
