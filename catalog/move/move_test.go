package move_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/auth"
)

const adminToken = "move-test-admin-token"

// harness is the catalog's REST API over a bbolt store, and a fake
// barrier: lag says who has not reached a version (nil: everyone has).
type harness struct {
	store *bolt.Store
	api   *httpclient.Client

	mu     sync.Mutex
	lag    func(version int64) []string
	waited []int64 // versions WaitPropagation was asked for
	// waitedFor: the same, by tenant
	waitedFor map[string][]int64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "catalog.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	creds, err := auth.Parse(strings.NewReader(auth.Line(auth.Admin, adminToken, "ops")+"\n"), "test credentials")
	if err != nil {
		t.Fatal(err)
	}
	// No rate limit: the property test sends far more than an operator's
	// tcsctl would (the default is 100 a second per caller).
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: st, Auth: auth.Static(creds), RateLimits: &httpapi.RateLimits{}}))
	t.Cleanup(srv.Close)
	api, err := httpclient.New(srv.URL, httpclient.WithToken(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	return &harness{store: st, api: api}
}

// catalog is the move's view of the harness: the real API for reads and
// writes, the fake barrier for waits.
type catalogView struct {
	*httpclient.Client
	h *harness
}

func (c catalogView) Propagation(_ context.Context, id string, version int64, _ time.Duration) (httpclient.Propagation, error) {
	c.h.mu.Lock()
	defer c.h.mu.Unlock()
	var lagging []string
	if c.h.lag != nil {
		lagging = c.h.lag(version)
	}
	p := httpclient.Propagation{Lagging: lagging}
	p.TenantID, p.Version, p.Done = id, version, len(lagging) == 0
	return p, nil
}

func (c catalogView) WaitPropagation(ctx context.Context, id string, version int64) (httpclient.Propagation, error) {
	c.h.mu.Lock()
	c.h.waited = append(c.h.waited, version)
	if c.h.waitedFor == nil {
		c.h.waitedFor = map[string][]int64{}
	}
	c.h.waitedFor[id] = append(c.h.waitedFor[id], version)
	c.h.mu.Unlock()
	p, _ := c.Propagation(ctx, id, version, 0)
	if !p.Done {
		return p, context.DeadlineExceeded // as the real client does when the wait runs out
	}
	return p, nil
}

func (h *harness) mover() *move.Mover {
	return &move.Mover{Catalog: catalogView{h.api, h}, MaxLag: time.Second}
}

func (h *harness) setLag(f func(int64) []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lag = f
}

func (h *harness) waits() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.waited)
}

var (
	dbOld = tenant.Database{Engine: "postgres", Host: "db-1.internal", Port: 5432, Name: "acme", Region: "us-east-1", SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tcs/acme"}
	dbNew = tenant.Database{Engine: "postgres", Host: "db-2.internal", Port: 5432, Name: "acme", Region: "us-east-1", SecretRef: "arn:aws:secretsmanager:us-east-1:123456789012:secret:tcs/acme"}
	toNew = json.RawMessage(`{"host":"DB-2.internal"}`)
)

func (h *harness) create(t *testing.T, id string) *tenant.Tenant {
	t.Helper()
	doc := fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"],"database":{"engine":"postgres","host":"db-1.internal","port":5432,"name":"acme","region":"us-east-1","secret_ref":%q}}`, id, id, dbOld.SecretRef)
	got, err := h.api.Create(t.Context(), json.RawMessage(doc))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (h *harness) get(t *testing.T, id string) *tenant.Tenant {
	t.Helper()
	got, err := h.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// steps returns the move steps tenant id's audit records show, oldest
// first, one per write that changed the migration.
func (h *harness) steps(t *testing.T, id string) []string {
	t.Helper()
	recs, err := h.store.History(context.Background(), id, catalog.HistoryOptions{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		if r.After == nil || r.After.Migration == nil {
			continue
		}
		if r.Before != nil && r.Before.Migration != nil && r.Before.Migration.Step == r.After.Migration.Step &&
			r.Before.Migration.From == r.After.Migration.From {
			continue // an edit during the move
		}
		s := string(r.After.Migration.Step)
		if r.After.Migration.To == dbOld {
			s += "(back)"
		}
		if r.Actor != "ops" {
			t.Errorf("step %s audited with actor %q, want ops", s, r.Actor)
		}
		out = append(out, s)
	}
	return out
}

func wantTenant(t *testing.T, got *tenant.Tenant, step tenant.MoveStep, db tenant.Database) {
	t.Helper()
	if got.Migration == nil || got.Migration.Step != step || *got.Database != db || got.ReadOnly() != step.ReadOnly() || got.Status != tenant.StatusActive {
		t.Fatalf("tenant at %+v on %+v (read-only %v, %s); want step %s on %s", got.Migration, got.Database, got.ReadOnly(), got.Status, step, move.DatabaseName(db))
	}
}

// TestRun: a move runs PREPARED → COPIED → SWITCHED → COMPLETE, waiting for
// the barrier at the PREPARED version before the copy, at the COPIED
// version before the switch and at the SWITCHED version before completing;
// the copy sees the tenant read-only and gets both databases.
func TestRun(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, "acme")
	m := h.mover()
	var jobs []move.CopyJob
	m.Copy = func(ctx context.Context, job move.CopyJob) error {
		cur := h.get(t, "acme")
		if !cur.ReadOnly() || *cur.Database != dbOld {
			t.Errorf("copy ran on a tenant that is not read-only on the old database: %+v", cur.Migration)
		}
		jobs = append(jobs, job)
		return nil
	}
	var log strings.Builder
	m.Log = &log
	got, err := m.Run(t.Context(), "acme", toNew)
	if err != nil {
		t.Fatal(err)
	}
	wantTenant(t, got, tenant.MoveComplete, dbNew)
	if m := got.Migration; m.From != dbOld || m.To != dbNew || m.By != "ops" || m.Started.IsZero() {
		t.Errorf("migration record %+v", m)
	}
	if want := []string{"PREPARED", "COPIED", "SWITCHED", "COMPLETE"}; !slices.Equal(h.steps(t, "acme"), want) {
		t.Errorf("audited steps %q, want %q", h.steps(t, "acme"), want)
	}
	if want := []int64{2, 3, 4}; !slices.Equal(h.waits(), want) {
		t.Errorf("barrier waits at versions %v, want %v (PREPARED, COPIED, SWITCHED)", h.waits(), want)
	}
	if len(jobs) != 1 || jobs[0] != (move.CopyJob{Tenant: "acme", From: dbOld, To: dbNew}) {
		t.Errorf("copy jobs %+v", jobs)
	}
	for _, want := range []string{"acme: PREPARED at version 2", "acme: SWITCHED at version 4 (database postgres db-2.internal:5432/acme, read-only false)", "acme: COMPLETE at version 5"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	// Running again is a no-op that says so.
	again, err := h.mover().Run(t.Context(), "acme", toNew)
	if err != nil || again.Version != got.Version {
		t.Errorf("run again after COMPLETE: %v, %v; want the tenant as it is", again, err)
	}
}

var errKilled = errors.New("killed")

// TestKilledAndResumed: a Run killed after any step, during any barrier
// wait or during the copy, resumes from the stored step when run again
// (with --to or without), takes each step once and copies once unless the
// kill came during the copy.
func TestKilledAndResumed(t *testing.T) {
	t.Parallel()
	type kill struct {
		name string
		// arm makes m die at the kill point; it returns the cancel func of
		// the run's context when the kill is a context cancel.
		arm func(m *move.Mover, h *harness, cancel context.CancelFunc)
		// copies is how many times the copy runs, both runs together.
		copies int
	}
	afterStep := func(step tenant.MoveStep) func(*move.Mover, *harness, context.CancelFunc) {
		return func(m *move.Mover, _ *harness, _ context.CancelFunc) {
			m.AfterWrite = func(s tenant.MoveStep, _ int64) error {
				if s == step {
					return errKilled
				}
				return nil
			}
		}
	}
	// inWait kills the run during its n-th barrier wait (ctx cancelled
	// while waiting).
	inWait := func(n int) func(*move.Mover, *harness, context.CancelFunc) {
		return func(_ *move.Mover, h *harness, cancel context.CancelFunc) {
			h.setLag(func(int64) []string {
				if len(h.waited) == n {
					cancel()
				}
				return nil
			})
		}
	}
	kills := []kill{
		{"after PREPARED", afterStep(tenant.MovePrepared), 1},
		{"during the first barrier", inWait(1), 1},
		{"during the copy", func(m *move.Mover, _ *harness, cancel context.CancelFunc) {
			inner := m.Copy
			m.Copy = func(ctx context.Context, job move.CopyJob) error {
				inner(ctx, job)
				cancel()
				<-ctx.Done()
				return ctx.Err()
			}
		}, 2},
		{"after COPIED", afterStep(tenant.MoveCopied), 1},
		{"during the barrier before the switch", inWait(2), 1},
		{"after SWITCHED", afterStep(tenant.MoveSwitched), 1},
		{"during the last barrier", inWait(3), 1},
		{"after COMPLETE", afterStep(tenant.MoveComplete), 1},
	}
	for _, k := range kills {
		for _, resumeTo := range []json.RawMessage{nil, toNew} {
			t.Run(fmt.Sprintf("%s/resume with --to %s", k.name, resumeTo), func(t *testing.T) {
				t.Parallel()
				h := newHarness(t)
				h.create(t, "acme")
				copies := 0
				countCopy := func(context.Context, move.CopyJob) error { copies++; return nil }

				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				m := h.mover()
				m.Copy = countCopy
				k.arm(m, h, cancel)
				if _, err := m.Run(ctx, "acme", toNew); !errors.Is(err, errKilled) && !errors.Is(err, context.Canceled) {
					t.Fatalf("killed run: %v, want killed or cancelled", err)
				}
				h.setLag(nil)

				m2 := h.mover()
				m2.Copy = countCopy
				got, err := m2.Run(t.Context(), "acme", resumeTo)
				if err != nil {
					t.Fatalf("resume: %v", err)
				}
				wantTenant(t, got, tenant.MoveComplete, dbNew)
				if want := []string{"PREPARED", "COPIED", "SWITCHED", "COMPLETE"}; !slices.Equal(h.steps(t, "acme"), want) {
					t.Errorf("audited steps %q, want %q (each once)", h.steps(t, "acme"), want)
				}
				if copies != k.copies {
					t.Errorf("copied %d times, want %d", copies, k.copies)
				}
			})
		}
	}
}

// TestCancelAndReverse: cancel and reverse from every step. Cancel leaves
// the pointer where it is (old before the switch, new after) and the
// tenant writable; reverse before the switch ends the move at the old
// database, after it (or once complete) starts a move back that Run then
// drives home. Cancel with no move in progress changes nothing.
func TestCancelAndReverse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at tenant.MoveStep
		// cancel: the step and database after cancel ("" when refused).
		cancelStep tenant.MoveStep
		cancelDB   tenant.Database
		// reverse: the step and database right after reverse.
		reverseStep tenant.MoveStep
		reverseDB   tenant.Database
		back        bool // reverse started a move back
	}{
		{tenant.MovePrepared, tenant.MoveCancelled, dbOld, tenant.MoveReversed, dbOld, false},
		{tenant.MoveCopied, tenant.MoveCancelled, dbOld, tenant.MoveReversed, dbOld, false},
		{tenant.MoveSwitched, tenant.MoveCancelled, dbNew, tenant.MovePrepared, dbNew, true},
		{tenant.MoveComplete, "", dbNew, tenant.MovePrepared, dbNew, true},
	} {
		t.Run(string(tc.at), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			for _, id := range []string{"cancel-me", "reverse-me"} {
				h.create(t, id)
				m := h.mover()
				m.Copied = false
				m.Copy = func(context.Context, move.CopyJob) error { return nil }
				m.AfterWrite = func(s tenant.MoveStep, _ int64) error {
					if s == tc.at {
						return errKilled
					}
					return nil
				}
				if _, err := m.Run(t.Context(), id, toNew); !errors.Is(err, errKilled) {
					t.Fatalf("run to %s: %v", tc.at, err)
				}
			}

			before := h.get(t, "cancel-me")
			got, err := h.mover().Cancel(t.Context(), "cancel-me")
			if tc.cancelStep == "" {
				if tenant.ErrorCode(err) != tenant.Invalid || !strings.Contains(err.Error(), "no move in progress to cancel") {
					t.Errorf("cancel at %s: %v, want Invalid no move in progress", tc.at, err)
				}
				if after := h.get(t, "cancel-me"); after.Version != before.Version {
					t.Errorf("refused cancel wrote version %d", after.Version)
				}
			} else {
				if err != nil {
					t.Fatalf("cancel: %v", err)
				}
				wantTenant(t, got, tc.cancelStep, tc.cancelDB)
			}

			got, err = h.mover().Reverse(t.Context(), "reverse-me")
			if err != nil {
				t.Fatalf("reverse: %v", err)
			}
			wantTenant(t, got, tc.reverseStep, tc.reverseDB)
			if !tc.back {
				return
			}
			if m := got.Migration; m.From != dbNew || m.To != dbOld {
				t.Fatalf("reverse started %s → %s, want back to the old database", move.DatabaseName(m.From), move.DatabaseName(m.To))
			}
			m := h.mover()
			m.Copy = func(context.Context, move.CopyJob) error { return nil }
			home, err := m.Run(t.Context(), "reverse-me", nil)
			if err != nil {
				t.Fatalf("run the move back: %v", err)
			}
			wantTenant(t, home, tenant.MoveComplete, dbOld)
		})
	}
}

// runTo starts a move of a new tenant id and stops it right after it wrote
// step at.
func (h *harness) runTo(t *testing.T, id string, at tenant.MoveStep) *tenant.Tenant {
	t.Helper()
	h.create(t, id)
	m := h.mover()
	m.Copy = func(context.Context, move.CopyJob) error { return nil }
	m.AfterWrite = func(s tenant.MoveStep, _ int64) error {
		if s == at {
			return errKilled
		}
		return nil
	}
	if _, err := m.Run(t.Context(), id, toNew); !errors.Is(err, errKilled) {
		t.Fatalf("run %s to %s: %v", id, at, err)
	}
	return h.get(t, id)
}

func (h *harness) waitsFor(id string) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.waitedFor[id])
}

// TestCancelAndReverseWaitForBarrier: cancel and reverse, from every step
// they take, wait for the barrier at the version they wrote, as the
// forward steps do; while a region lags beyond --max-lag they return the
// tenant written and a *LagError naming who lags and saying what to run
// (the write stands: tcsctl wait for an ended move, tcsctl move for a move
// back, which waits at that version before it goes on).
func TestCancelAndReverseWaitForBarrier(t *testing.T) {
	t.Parallel()
	lagging := "eu-west-1/tcs-2: replica at version 2"
	for _, tc := range []struct {
		verb string
		at   tenant.MoveStep
		want tenant.MoveStep // the step written
		hint string          // what the lag error says to run
	}{
		{"cancel", tenant.MovePrepared, tenant.MoveCancelled, "tcsctl move cancel %s, or tcsctl wait %[1]s --version %d"},
		{"cancel", tenant.MoveCopied, tenant.MoveCancelled, "tcsctl move cancel %s, or tcsctl wait %[1]s --version %d"},
		{"cancel", tenant.MoveSwitched, tenant.MoveCancelled, "tcsctl move cancel %s, or tcsctl wait %[1]s --version %d"},
		{"reverse", tenant.MovePrepared, tenant.MoveReversed, "tcsctl move reverse %s, or tcsctl wait %[1]s --version %d"},
		{"reverse", tenant.MoveCopied, tenant.MoveReversed, "tcsctl move reverse %s, or tcsctl wait %[1]s --version %d"},
		{"reverse", tenant.MoveSwitched, tenant.MovePrepared, "drive the move back with: tcsctl move %s, which waits for version %d first"},
		{"reverse", tenant.MoveComplete, tenant.MovePrepared, "drive the move back with: tcsctl move %s, which waits for version %d first"},
	} {
		t.Run(tc.verb+" at "+string(tc.at), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			end := func(m *move.Mover) func(context.Context, string) (*tenant.Tenant, error) {
				if tc.verb == "reverse" {
					return m.Reverse
				}
				return m.Cancel
			}

			// Everyone catches up: the call returns once the barrier holds
			// at the version it wrote.
			before := h.runTo(t, "quick", tc.at)
			got, err := end(h.mover())(t.Context(), "quick")
			if err != nil {
				t.Fatalf("%s: %v", tc.verb, err)
			}
			if got.Version != before.Version+1 || got.Migration.Step != tc.want {
				t.Fatalf("%s wrote %s at version %d, want %s at %d", tc.verb, got.Migration.Step, got.Version, tc.want, before.Version+1)
			}
			if w := h.waitsFor("quick"); len(w) == 0 || w[len(w)-1] != got.Version {
				t.Errorf("%s waited for versions %v, want the last at %d (the version it wrote)", tc.verb, w, got.Version)
			}

			// A region lags: the write stands, the call stops naming it.
			before = h.runTo(t, "slow", tc.at)
			h.setLag(func(v int64) []string {
				if v > before.Version {
					return []string{lagging}
				}
				return nil
			})
			got, err = end(h.mover())(t.Context(), "slow")
			var lag *move.LagError
			if !errors.As(err, &lag) || lag.Verb != tc.verb || lag.Step != tc.want || lag.Version != before.Version+1 ||
				!slices.Equal(lag.Lagging, []string{lagging}) || !strings.Contains(err.Error(), "within --max-lag 1s") ||
				!strings.Contains(err.Error(), lagging) {
				t.Fatalf("%s with a lagging region: %v, want a *LagError of %s at %s, version %d, naming %q", tc.verb, err, tc.verb, tc.want, before.Version+1, lagging)
			}
			if hint := fmt.Sprintf(tc.hint, "slow", lag.Version); !strings.Contains(err.Error(), hint) {
				t.Errorf("lag error %q does not say %q", err, hint)
			}
			if got == nil || got.Version != lag.Version || got.Migration.Step != tc.want {
				t.Fatalf("%s with a lagging region returned %+v, want the tenant written", tc.verb, got)
			}
			if stored := h.get(t, "slow"); stored.Version != lag.Version || stored.Migration.Step != tc.want {
				t.Errorf("stored %s at version %d, want the write to stand (%s at %d)", stored.Migration.Step, stored.Version, tc.want, lag.Version)
			}
			r, err := move.Status(t.Context(), catalogView{h.api, h}, "slow")
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == tenant.MovePrepared && !slices.Equal(r.Lagging(), []string{lagging}) {
				t.Errorf("status of the move back: lagging %v, want %q", r.Lagging(), lagging)
			}

			if tc.want != tenant.MovePrepared {
				// Run again while the region still lags: nothing more is
				// written, and it stops the same way; once the region
				// caught up, it returns the tenant as it stands.
				again, err := end(h.mover())(t.Context(), "slow")
				if !errors.As(err, &lag) || lag.Version != before.Version+1 || again == nil || again.Version != before.Version+1 {
					t.Fatalf("%s again while lagging: %+v, %v; want the same *LagError at version %d, nothing written", tc.verb, again, err, before.Version+1)
				}
				h.setLag(func(int64) []string { return nil })
				again, err = end(h.mover())(t.Context(), "slow")
				if err != nil || again.Version != before.Version+1 || again.Migration.Step != tc.want {
					t.Fatalf("%s again once caught up: %+v, %v; want %s at version %d", tc.verb, again, err, tc.want, before.Version+1)
				}
				if w := h.waitsFor("slow"); w[len(w)-1] != before.Version+1 {
					t.Errorf("%s again waited for versions %v, want the last at %d", tc.verb, w, before.Version+1)
				}
				return
			}
			// The move back does not go on while the region lags, and
			// finishes once it caught up.
			m := h.mover()
			m.Copy = func(context.Context, move.CopyJob) error { return nil }
			if _, err := m.Run(t.Context(), "slow", nil); !errors.As(err, &lag) || lag.Verb != "" || lag.Step != tenant.MovePrepared {
				t.Fatalf("run the move back while a region lags: %v, want a *LagError at PREPARED", err)
			}
			h.setLag(nil)
			home, err := m.Run(t.Context(), "slow", nil)
			if err != nil {
				t.Fatal(err)
			}
			wantTenant(t, home, tenant.MoveComplete, dbOld)
		})
	}
}

// TestConcurrentEdits: while a move copies, a label edit goes through (the
// move's next write loses its If-Match, reads again and goes on, keeping
// the label); a change of database and a delete are refused with 409
// move_conflict naming the step; a cancel from another shell ends the
// run with an *EndedError.
func TestConcurrentEdits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, "acme")
	m := h.mover()
	m.Copy = func(ctx context.Context, _ move.CopyJob) error {
		cur := h.get(t, "acme")
		if _, err := h.api.Patch(ctx, "acme", cur.Version, httpclient.MergePatch{"labels": map[string]any{"tier": "gold"}}); err != nil {
			t.Errorf("label edit during the move: %v", err)
		}
		cur = h.get(t, "acme")
		_, err := h.api.Patch(ctx, "acme", cur.Version, httpclient.MergePatch{"database": map[string]any{"host": "db-9.internal"}})
		if !httpclient.IsMoveConflict(err) || httpclient.Status(err) != 409 || !strings.Contains(err.Error(), "step PREPARED") {
			t.Errorf("database edit during the move: %v, want 409 move_conflict naming step PREPARED", err)
		}
		if err := h.api.Delete(ctx, "acme", 0); !httpclient.IsMoveConflict(err) {
			t.Errorf("delete during the move: %v, want 409 move_conflict", err)
		}
		return nil
	}
	got, err := m.Run(t.Context(), "acme", toNew)
	if err != nil {
		t.Fatal(err)
	}
	wantTenant(t, got, tenant.MoveComplete, dbNew)
	if got.Labels["tier"] != "gold" {
		t.Errorf("the label edit was lost: %v", got.Labels)
	}

	// A cancel from another shell while the run copies.
	h.create(t, "beta")
	m = h.mover()
	m.Copy = func(ctx context.Context, _ move.CopyJob) error {
		_, err := h.mover().Cancel(ctx, "beta")
		return err
	}
	_, err = m.Run(t.Context(), "beta", toNew)
	var ended *move.EndedError
	if !errors.As(err, &ended) || ended.Migration.Step != tenant.MoveCancelled || !strings.Contains(err.Error(), "ended by ops") {
		t.Fatalf("run whose move was cancelled: %v, want an *EndedError at CANCELLED", err)
	}
	wantTenant(t, h.get(t, "beta"), tenant.MoveCancelled, dbOld)
}

// TestLagRefusesToSwitch: while a region lags beyond --max-lag the move
// does not go on: a *LagError names who lags and the step stays; once the
// region catches up, running again finishes.
func TestLagRefusesToSwitch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, "acme")
	m := h.mover()
	m.Copy = func(context.Context, move.CopyJob) error { return nil }
	lagging := "eu-west-1/tcs-2: replica at version 2"
	h.setLag(func(v int64) []string {
		if v == 3 { // COPIED: the wait before the switch
			return []string{lagging}
		}
		return nil
	})
	_, err := m.Run(t.Context(), "acme", toNew)
	var lag *move.LagError
	if !errors.As(err, &lag) || lag.Step != tenant.MoveCopied || lag.Version != 3 || !slices.Equal(lag.Lagging, []string{lagging}) ||
		!strings.Contains(err.Error(), "within --max-lag 1s") {
		t.Fatalf("run with a lagging region: %v, want a *LagError at COPIED naming %q", err, lagging)
	}
	wantTenant(t, h.get(t, "acme"), tenant.MoveCopied, dbOld)

	r, err := move.Status(t.Context(), catalogView{h.api, h}, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if r.Migration.Step != tenant.MoveCopied || !slices.Equal(r.Lagging(), []string{lagging}) || !strings.Contains(r.Next, "tcsctl move acme") {
		t.Errorf("status: %+v", r)
	}

	h.setLag(nil)
	got, err := h.mover().Run(t.Context(), "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTenant(t, got, tenant.MoveComplete, dbNew)
}

// TestAwaitingCopy: with no copy command the run stops once the flag has
// reached everyone, saying what to copy and what to run; --copied goes on.
// --copied on the run that starts the move does not count (the copy would
// predate the read-only flag).
func TestAwaitingCopy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, "acme")
	m := h.mover()
	m.Copied = true
	_, err := m.Run(t.Context(), "acme", toNew)
	var wait *move.AwaitingCopyError
	if !errors.As(err, &wait) || wait.Version != 2 ||
		!strings.Contains(err.Error(), "copy its data from postgres db-1.internal:5432/acme to postgres db-2.internal:5432/acme, then run: tcsctl move acme --copied") {
		t.Fatalf("run without a copy: %v", err)
	}
	wantTenant(t, h.get(t, "acme"), tenant.MovePrepared, dbOld)
	m = h.mover()
	m.Copied = true
	got, err := m.Run(t.Context(), "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantTenant(t, got, tenant.MoveComplete, dbNew)
}

// TestBadInput: an unknown tenant, a malformed --to, the database the
// tenant is on, a second move while one is in progress, and a resume with
// nothing to resume get a clear error and change nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.create(t, "acme")
	h.create(t, "busy")
	m := h.mover()
	m.AfterWrite = func(s tenant.MoveStep, _ int64) error { return errKilled }
	if _, err := m.Run(t.Context(), "busy", toNew); !errors.Is(err, errKilled) {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		to   string
		want string
	}{
		{"nobody", `{"host":"db-2.internal"}`, "404"},
		{"acme", `not json`, "--to must be a JSON object"},
		{"acme", `["db-2"]`, "--to must be a JSON object"},
		{"acme", `{"hots":"db-2.internal"}`, "database.hots"},
		{"acme", `{"password":"hunter2"}`, "database.password"},
		{"acme", `{"port":70000}`, "database.port"},
		{"acme", `{"host":"db 2"}`, "database.host"},
		{"acme", `{"host":"DB-1.internal."}`, "on already (postgres db-1.internal:5432/acme)"},
		{"acme", `{}`, "on already"},
		{"acme", "", "has no move in progress; give --to"},
		{"busy", `{"host":"db-3.internal"}`, "is moving to postgres db-2.internal:5432/acme (step PREPARED, started by ops)"},
		{"NOT_AN_ID", `{"host":"db-2.internal"}`, "id"},
	} {
		var before int64
		if tc.id == "acme" || tc.id == "busy" {
			before = h.get(t, tc.id).Version
		}
		var to json.RawMessage
		if tc.to != "" {
			to = json.RawMessage(tc.to)
		}
		_, err := h.mover().Run(t.Context(), tc.id, to)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("move %s --to %s: %v, want an error containing %q", tc.id, tc.to, err, tc.want)
		}
		if before != 0 && h.get(t, tc.id).Version != before {
			t.Errorf("move %s --to %s wrote version %d", tc.id, tc.to, h.get(t, tc.id).Version)
		}
	}
}

// TestCopyJobEnv: the copy command's environment names both databases.
func TestCopyJobEnv(t *testing.T) {
	t.Parallel()
	got := move.CopyJob{Tenant: "acme", From: dbOld, To: dbNew}.Env()
	want := []string{"TCS_MOVE_TENANT=acme",
		"TCS_MOVE_FROM_ENGINE=postgres", "TCS_MOVE_FROM_HOST=db-1.internal", "TCS_MOVE_FROM_PORT=5432", "TCS_MOVE_FROM_NAME=acme",
		"TCS_MOVE_FROM_REGION=us-east-1", "TCS_MOVE_FROM_SECRET_REF=" + dbOld.SecretRef,
		"TCS_MOVE_TO_ENGINE=postgres", "TCS_MOVE_TO_HOST=db-2.internal", "TCS_MOVE_TO_PORT=5432", "TCS_MOVE_TO_NAME=acme",
		"TCS_MOVE_TO_REGION=us-east-1", "TCS_MOVE_TO_SECRET_REF=" + dbNew.SecretRef}
	if !slices.Equal(got, want) {
		t.Errorf("Env() = %q\nwant %q", got, want)
	}
}
