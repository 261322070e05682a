package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
)

// lookupEverywhere asks every region's lookup server for hostname.
func (s *system) lookupEverywhere(t *testing.T, hostname string) map[string]*tenant.Tenant {
	t.Helper()
	out := map[string]*tenant.Tenant{}
	for region, c := range s.lookups {
		res, err := c.Lookup(context.Background(), &tcsv1.LookupRequest{Hostname: hostname})
		if err != nil {
			t.Fatalf("%s: lookup %s: %v", region, hostname, err)
		}
		if out[region], err = tcsv1.TenantFromProto(res.GetTenant()); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestMoveCLI: tcsctl move on the in-process system. Killed during its
// copy (the copy command hangs; the run is interrupted), the move stays
// PREPARED and every region serves the tenant read-only; move status says
// so; the same command resumes, runs the copy with both databases in its
// environment, switches and completes; every region then serves the new
// database, writable, and each step is audited under the operator's name.
func TestMoveCLI(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, sampleTenant("acme", 1)) // postgres db-8.internal:5432/acme
	dir := t.TempDir()
	started := filepath.Join(dir, "started")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := s.tcsctl(t, ctx, "move", "acme", "--to", `{"host":"db-new.internal"}`,
			"--copy-cmd", "touch "+started+" && exec sleep 60")
		done <- result{code, out, errOut}
	}()
	testwait.For(t, "the copy command to start", func() bool { _, err := os.Stat(started); return err == nil })
	// The copy starts only once the flag has reached everyone.
	for region, got := range s.lookupEverywhere(t, "acme.example.com") {
		if !got.ReadOnly() || got.Migration.Step != tenant.MovePrepared || got.Database.Host != "db-8.internal" || got.Status != tenant.StatusActive {
			t.Errorf("%s during the copy: %+v on %+v (%s); want PREPARED, read-only, ACTIVE, db-8", region, got.Migration, got.Database, got.Status)
		}
	}
	cancel()
	r := <-done
	if r.code != exitInterrupted || !strings.Contains(r.errOut, "run the same command again to resume it") ||
		!strings.Contains(r.out, "acme: PREPARED at version 2") {
		t.Fatalf("interrupted move: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.errOut)
	}

	out := s.mustTcsctl(t, 0, "move", "status", "acme")
	for _, want := range []string{"step:        PREPARED", "read-only:   true", "from:        postgres db-8.internal:5432/acme",
		"to:          postgres db-new.internal:5432/acme", "by sre", "version 2 has reached every region", "tcsctl move acme --copied"} {
		if !strings.Contains(out, want) {
			t.Errorf("move status lacks %q:\n%s", want, out)
		}
	}
	var rep move.Report
	if err := json.Unmarshal([]byte(s.mustTcsctl(t, 0, "move", "status", "acme", "-o", "json")), &rep); err != nil ||
		rep.Migration.Step != tenant.MovePrepared || rep.Propagation == nil || !rep.Propagation.Done {
		t.Errorf("move status -o json: %v %+v", err, rep)
	}

	envFile := filepath.Join(dir, "env")
	out = s.mustTcsctl(t, 0, "move", "acme", "--to", `{"host":"db-new.internal"}`,
		"--copy-cmd", `echo "$TCS_MOVE_TENANT $TCS_MOVE_FROM_HOST:$TCS_MOVE_FROM_PORT/$TCS_MOVE_FROM_NAME $TCS_MOVE_TO_HOST:$TCS_MOVE_TO_PORT/$TCS_MOVE_TO_NAME" > `+envFile)
	if !strings.Contains(out, "tenant acme is on postgres db-new.internal:5432/acme (move COMPLETE at version 5)") {
		t.Errorf("resumed move:\n%s", out)
	}
	if b, err := os.ReadFile(envFile); err != nil || string(b) != "acme db-8.internal:5432/acme db-new.internal:5432/acme\n" {
		t.Errorf("the copy command's environment: %q, %v", b, err)
	}
	s.waitApplied(t, "acme", 5)
	for region, got := range s.lookupEverywhere(t, "acme.example.com") {
		if got.ReadOnly() || got.Migration.Step != tenant.MoveComplete || got.Database.Host != "db-new.internal" {
			t.Errorf("%s after the move: %+v on %+v", region, got.Migration, got.Database)
		}
	}
	recs, err := s.store.History(context.Background(), "acme", catalog.HistoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for i := len(recs) - 1; i >= 1; i-- {
		steps = append(steps, string(recs[i-1].After.Migration.Step)+" by "+recs[i-1].Actor)
	}
	if got := strings.Join(steps, ", "); got != "PREPARED by sre, COPIED by sre, SWITCHED by sre, COMPLETE by sre" {
		t.Errorf("audited steps: %s", got)
	}
	// Resuming a complete move says so.
	if out := s.mustTcsctl(t, 0, "move", "acme"); !strings.Contains(out, "move COMPLETE at version 5") {
		t.Errorf("move acme after it completed:\n%s", out)
	}

	// A restore keeps the move record: export, delete, backfill.
	exported := filepath.Join(dir, "tenants.jsonl")
	s.mustTcsctl(t, 0, "export", "--to", exported)
	if err := s.api.Delete(context.Background(), "acme", 5); err != nil {
		t.Fatal(err)
	}
	s.mustTcsctl(t, 0, "backfill", "--from", exported, "--yes")
	if got := s.get(t, "acme"); got.Migration == nil || got.Migration.Step != tenant.MoveComplete || got.Database.Host != "db-new.internal" || got.Migration.By != "sre" {
		t.Errorf("restored acme: %+v on %+v", got.Migration, got.Database)
	}
}

// TestMoveCLICopyCancelReverse: without --copy-cmd the move stops for the
// copy (exit 1, saying what to run); reverse then ends it at the old
// database; cancel with nothing in progress, and bad input, are refused
// (exit 2) and change nothing.
func TestMoveCLICopyCancelReverse(t *testing.T) {
	t.Parallel()
	s := startSystem(t, sysOptions{})
	s.create(t, sampleTenant("beta", 2)) // db-9.internal

	code, out, errOut := s.tcsctl(t, context.Background(), "move", "beta", "--to", `{"host":"db-x.internal","name":"beta2"}`)
	if code != exitFinding || !strings.Contains(errOut, "copy its data from postgres db-9.internal:5432/beta to postgres db-x.internal:5432/beta2, then run: tcsctl move beta --copied") {
		t.Fatalf("move without a copy: exit %d\n%s%s", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"move", "beta", "--to", `{"host":"db-y.internal"}`}, "is moving to postgres db-x.internal:5432/beta2 (step PREPARED"},
		{[]string{"move", "beta", "--to", `{"hots":"x"}`}, "database.hots"},
		{[]string{"move", "beta", "--copied", "--copy-cmd", "true"}, "--copy-cmd and --copied exclude each other"},
		{[]string{"move", "beta", "--max-lag", "0s"}, "--max-lag 0s"},
		{[]string{"move", "nobody", "--to", `{"host":"db-x.internal"}`}, "404"},
		{[]string{"move", "cancel", "nobody"}, "404"},
		{[]string{"move", "cancel", "beta", "--max-lag", "0s"}, "--max-lag 0s"},
		{[]string{"move", "reverse", "beta", "--max-lag", "-1s"}, "--max-lag -1s"},
		{[]string{"move", "status"}, "want 1 argument"},
	} {
		code, _, errOut := s.tcsctl(t, context.Background(), tc.args...)
		if code != exitError || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, want %d with %q:\n%s", tc.args, code, exitError, tc.want, errOut)
		}
	}
	if v := s.get(t, "beta").Version; v != 2 {
		t.Errorf("refused commands wrote: beta at version %d, want 2", v)
	}

	// reverse waits for the barrier at the version it wrote, as every
	// step does, before it reports: every region then serves it writable.
	out = s.mustTcsctl(t, 0, "move", "reverse", "beta", "--max-lag", "30s")
	for _, want := range []string{"beta: REVERSED at version 3", "waiting for version 3 (step REVERSED)", "(--max-lag 30s)",
		"version 3 has reached everywhere", "tenant beta: move REVERSED; it stays on postgres db-9.internal:5432/beta, writable (version 3)"} {
		if !strings.Contains(out, want) {
			t.Errorf("move reverse lacks %q:\n%s", want, out)
		}
	}
	for region, got := range s.lookupEverywhere(t, "beta.example.com") {
		if got.Version != 3 || got.ReadOnly() || got.Migration.Step != tenant.MoveReversed {
			t.Errorf("%s right after move reverse: version %d, %+v; want version 3, REVERSED, writable", region, got.Version, got.Migration)
		}
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "move", "cancel", "beta")
	if code != exitError || !strings.Contains(errOut, "tenant beta has no move in progress to cancel") {
		t.Errorf("cancel with no move: exit %d\n%s", code, errOut)
	}
	code, _, errOut = s.tcsctl(t, context.Background(), "move", "beta", "--to", `{"host":"db-9.internal"}`)
	if code != exitError || !strings.Contains(errOut, "on already (postgres db-9.internal:5432/beta)") {
		t.Errorf("move to the same database: exit %d\n%s", code, errOut)
	}
	if v := s.get(t, "beta").Version; v != 3 {
		t.Errorf("beta at version %d after refused commands, want 3", v)
	}

	// A tenant named like a subcommand moves with move run.
	s.create(t, sampleTenant("status", 3))
	code, _, errOut = s.tcsctl(t, context.Background(), "move", "run", "status", "--to", `{"host":"db-z.internal"}`)
	if code != exitFinding || !strings.Contains(errOut, "then run: tcsctl move status --copied") {
		t.Errorf("move run status: exit %d\n%s", code, errOut)
	}
}
