// Package move runs tenant moves (tcsctl move, issue 13): repointing a
// tenant at another database with a safe cut-over, as a resumable workflow
// whose state lives in the catalog.
//
// # State in the tenant document
//
// The workflow keeps its state in the tenant's own document, as
// tenant.Migration {step, read_only, from, to, started, by}. Every step is
// therefore one ordinary versioned write (PUT with If-Match): atomic with
// the database pointer, sealed in the tenant's audit chain (actor and the
// documents before and after), propagated by the pipeline that carries
// every change, and stored by both catalog backends with no table of its
// own. The catalog checks every write against the step rules
// (catalog.CheckMove) and refuses, with 409 move_conflict naming the step,
// a step out of order, a change of from or to within a move, a change of the
// database pointer and a delete while a move is in progress — so a buggy or
// concurrent tcsctl, or a hand-made PATCH, cannot corrupt a move. Other
// edits (labels, products) go through; the workflow's own writes then fail
// their If-Match, and it reads the tenant again and goes on from the step
// stored.
//
// The tenant stays ACTIVE throughout: tcs/work keeps assigning it, and
// lookups keep serving it. What tells compute nodes to stop writing is
// migration.read_only (Tenant.ReadOnly in Go), true while the step is
// PREPARED or COPIED.
//
// # Steps
//
//  1. PREPARED: the move starts; the pointer stays at From and the tenant
//     is read-only. Wait for the barrier (catalog/propagation: every
//     region, node and acknowledging client cache) at that version, so
//     that every compute node has seen the flag.
//  2. Copy: run Copy (tcsctl move --copy-cmd), or stop and let the
//     operator copy (tcsctl move --copied records that it is done).
//     COPIED is written after it.
//  3. SWITCHED: after the barrier holds again at the current version, the
//     pointer moves to To and the flag is cleared in one write.
//  4. Wait for the barrier at the SWITCHED version: every node serves To.
//  5. COMPLETE: From may be retired.
//
// Every barrier wait is bounded by MaxLag: while any region has not reached
// the version within it, Run refuses to go on (a *LagError naming who lags)
// and the move stays at its step; running again resumes it. Because the
// state is in the catalog and each step is idempotent (a barrier wait, or a
// write conditioned on the version read), a Run killed anywhere — kill -9
// included — resumes from the stored step.
//
// Cancel ends a move where it stands: before the switch the pointer stays
// at From (CANCELLED), after it at To (CANCELLED). Reverse undoes it: before
// the switch nothing was moved, so the move ends REVERSED at From; after
// the switch (or once COMPLETE) writes may have reached To, so Reverse
// starts a new move back, To → From, at PREPARED, which Run then drives.
// Both then wait for the barrier at the version they wrote, bounded by
// MaxLag as the forward steps are, so that when they return every node
// serves the outcome (the read-only flag cleared, or set again for the move
// back); past MaxLag they return the tenant written and a *LagError naming
// who lags (the write stands: wait for it with tcsctl wait).
package move

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Catalog is what a move needs of the catalog's REST API;
// *httpclient.Client implements it.
type Catalog interface {
	GetRaw(ctx context.Context, id string) (map[string]any, error)
	Replace(ctx context.Context, id string, ifMatch int64, doc json.RawMessage) (*tenant.Tenant, error)
	Propagation(ctx context.Context, id string, version int64, wait time.Duration) (httpclient.Propagation, error)
	WaitPropagation(ctx context.Context, id string, version int64) (httpclient.Propagation, error)
}

var _ Catalog = (*httpclient.Client)(nil)

// DefaultMaxLag bounds each barrier wait when Mover.MaxLag is 0.
const DefaultMaxLag = 2 * time.Minute

// maxConflicts bounds how often one call reads the tenant again after a
// write lost a race (412) before giving up.
const maxConflicts = 32

// CopyJob is what the copy step copies: tenant's data from From to To.
type CopyJob struct {
	Tenant   string
	From, To tenant.Database
}

// Env returns the environment a copy command gets (tcsctl move
// --copy-cmd): TCS_MOVE_TENANT and, for FROM and TO, TCS_MOVE_<side>_ENGINE,
// _HOST, _PORT, _NAME, _REGION and _SECRET_REF (a reference to the
// credentials, never a secret), as NAME=value strings in that order.
func (j CopyJob) Env() []string {
	env := []string{"TCS_MOVE_TENANT=" + j.Tenant}
	for _, side := range []struct {
		name string
		db   tenant.Database
	}{{"FROM", j.From}, {"TO", j.To}} {
		p := "TCS_MOVE_" + side.name + "_"
		env = append(env, p+"ENGINE="+side.db.Engine, p+"HOST="+side.db.Host, p+"PORT="+strconv.Itoa(side.db.Port),
			p+"NAME="+side.db.Name, p+"REGION="+side.db.Region, p+"SECRET_REF="+side.db.SecretRef)
	}
	return env
}

// Mover runs moves against a catalog.
type Mover struct {
	Catalog Catalog
	// MaxLag bounds each barrier wait; DefaultMaxLag if 0.
	MaxLag time.Duration
	// Copy copies the tenant's data (tcsctl move --copy-cmd). Nil: the
	// operator copies, and Run stops at PREPARED with an *AwaitingCopyError
	// unless Copied is set.
	Copy func(ctx context.Context, job CopyJob) error
	// Copied says the operator has copied the data (tcsctl move --copied):
	// Run records COPIED without running Copy.
	Copied bool
	// Log gets one line per step taken; nil discards them.
	Log io.Writer
	// AfterWrite, if set, is called after each step is written; an error
	// ends Run with it, as a kill would (the tests' kill injection).
	AfterWrite func(step tenant.MoveStep, version int64) error
}

// AwaitingCopyError ends a Run at PREPARED when nobody copies: the operator
// must copy From to To, then run again with Copied.
type AwaitingCopyError struct {
	Job     CopyJob
	Version int64
}

func (e *AwaitingCopyError) Error() string {
	return fmt.Sprintf("tenant %s is read-only at version %d and every node has seen it: copy its data from %s to %s, then run: tcsctl move %s --copied",
		e.Job.Tenant, e.Version, DatabaseName(e.Job.From), DatabaseName(e.Job.To), e.Job.Tenant)
}

// LagError ends a Run when the barrier did not hold within MaxLag: the move
// stays at Step, and running again resumes it. It ends a Cancel or Reverse
// (Verb "cancel" or "reverse") whose write is done but has not reached
// everyone within MaxLag.
type LagError struct {
	Tenant  string
	Step    tenant.MoveStep
	Version int64
	MaxLag  time.Duration
	Lagging []string
	// Verb is "" for Run, or "cancel" or "reverse": the step was written.
	Verb string
}

func (e *LagError) Error() string {
	lagging := strings.Join(e.Lagging, "; ")
	if e.Verb == "" {
		return fmt.Sprintf("tenant %s (move at step %s) has not reached version %d everywhere within --max-lag %v, so the move does not go on (run again to resume); not there yet: %s",
			e.Tenant, e.Step, e.Version, e.MaxLag, lagging)
	}
	next := fmt.Sprintf("wait for it with: tcsctl move %s %s, or tcsctl wait %s --version %d", e.Verb, e.Tenant, e.Tenant, e.Version)
	if e.Step.Active() {
		next = fmt.Sprintf("drive the move back with: tcsctl move %s, which waits for version %d first", e.Tenant, e.Version)
	}
	return fmt.Sprintf("move %s of tenant %s wrote step %s at version %d, which has not reached everywhere within --max-lag %v (the write stands; %s); not there yet: %s",
		e.Verb, e.Tenant, e.Step, e.Version, e.MaxLag, next, lagging)
}

// EndedError ends a Run whose move someone else ended (tcsctl move cancel
// or reverse, from another shell) while it ran.
type EndedError struct {
	Tenant string
	// Migration is the tenant's migration now (nil if dropped).
	Migration *tenant.Migration
	Version   int64
	By        string
}

func (e *EndedError) Error() string {
	now := "no move"
	if m := e.Migration; m != nil {
		now = fmt.Sprintf("step %s (%s → %s)", m.Step, DatabaseName(m.From), DatabaseName(m.To))
	}
	return fmt.Sprintf("the move of tenant %s was ended by %s while this run drove it: version %d has %s", e.Tenant, e.By, e.Version, now)
}

// DatabaseName names a database for people: "postgres db-1.internal:5432/acme".
func DatabaseName(d tenant.Database) string {
	return fmt.Sprintf("%s %s:%d/%s", d.Engine, d.Host, d.Port, d.Name)
}

func (m *Mover) logf(format string, args ...any) {
	if m.Log != nil {
		fmt.Fprintf(m.Log, format+"\n", args...)
	}
}

func (m *Mover) maxLag() time.Duration {
	if m.MaxLag > 0 {
		return m.MaxLag
	}
	return DefaultMaxLag
}

// Target returns the database a move of a tenant now on cur goes to: the
// JSON object to (keys of tenant.Database) merged over cur, so that
// {"host":"db-2.internal"} keeps the engine, port, name and the rest. It
// fails with an Invalid *tenant.Error naming the key at fault (an unknown
// key, a secret, a bad value), or when to names cur itself.
func Target(cur tenant.Database, to json.RawMessage) (tenant.Database, error) {
	db, err := merge(cur, to)
	if err != nil {
		return db, err
	}
	if tenant.SameDatabase(db, cur) {
		return tenant.Database{}, tenant.Errorf(tenant.Invalid, "--to names the database the tenant is on already (%s)", DatabaseName(cur))
	}
	return db, nil
}

// merge is Target without the check that the result is another database.
func merge(cur tenant.Database, to json.RawMessage) (tenant.Database, error) {
	var over map[string]any
	if err := json.Unmarshal(to, &over); err != nil || over == nil {
		return tenant.Database{}, tenant.Errorf(tenant.Invalid, `--to must be a JSON object such as {"host":"db-2.internal","name":"acme"}: %s`, jsonProblem(err))
	}
	base, err := json.Marshal(cur)
	if err != nil {
		return tenant.Database{}, err
	}
	var merged map[string]any
	if err := json.Unmarshal(base, &merged); err != nil {
		return tenant.Database{}, err
	}
	maps.Copy(merged, over)
	for k, v := range merged {
		if v == nil {
			delete(merged, k)
		}
	}
	b, err := json.Marshal(merged)
	if err != nil {
		return tenant.Database{}, err
	}
	db, err := tenant.ParseDatabase(b)
	if err != nil {
		return tenant.Database{}, err
	}
	probe := &tenant.Tenant{ID: "probe", Hostnames: []string{"probe.invalid"}, Database: db}
	if err := tenant.Prepare(probe); err != nil {
		return tenant.Database{}, err
	}
	return *probe.Database, nil
}

func jsonProblem(err error) string {
	if err == nil {
		return "got null"
	}
	return err.Error()
}

// read returns the tenant as the API sent it and decoded.
func (m *Mover) read(ctx context.Context, id string) (map[string]any, *tenant.Tenant, error) {
	raw, err := m.Catalog.GetRaw(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("read tenant %s: %w", id, err)
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, nil, err
	}
	var t tenant.Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, nil, fmt.Errorf("decode tenant %s: %w", id, err)
	}
	return raw, &t, nil
}

// write stores raw with its migration and database replaced, if the tenant
// is still at version. A lost race (412) is errRetry.
func (m *Mover) write(ctx context.Context, id string, raw map[string]any, version int64, mig *tenant.Migration, db *tenant.Database) (*tenant.Tenant, error) {
	doc := maps.Clone(raw)
	set := func(key string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var x any
		if err := json.Unmarshal(b, &x); err != nil {
			return err
		}
		doc[key] = x
		return nil
	}
	if mig != nil {
		mig.ReadOnly = mig.Step.ReadOnly()
	}
	if err := set("migration", mig); err != nil {
		return nil, err
	}
	if err := set("database", db); err != nil {
		return nil, err
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	step := tenant.MoveStep("")
	if mig != nil {
		step = mig.Step
	}
	t, err := m.Catalog.Replace(ctx, id, version, body)
	if httpclient.IsVersionMismatch(err) {
		return nil, errRetry
	}
	if err != nil {
		return nil, fmt.Errorf("write tenant %s at step %s: %w", id, step, err)
	}
	m.logf("%s: %s at version %d (database %s, read-only %v)", id, step, t.Version, DatabaseName(*t.Database), t.ReadOnly())
	if m.AfterWrite != nil {
		if err := m.AfterWrite(step, t.Version); err != nil {
			return nil, err
		}
	}
	return t, nil
}

var errRetry = errors.New("the tenant changed; read it again")

// barrier waits until tenant id at version has reached every region, node
// and acknowledging client cache, at most MaxLag.
func (m *Mover) barrier(ctx context.Context, id string, step tenant.MoveStep, version int64) error {
	m.logf("%s: waiting for version %d (step %s) to reach every region, node and acknowledging client cache (--max-lag %v)", id, version, step, m.maxLag())
	wctx, cancel := context.WithTimeout(ctx, m.maxLag())
	defer cancel()
	p, err := m.Catalog.WaitPropagation(wctx, id, version)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err == nil && p.Done:
		m.logf("%s: version %d has reached everywhere", id, version)
		return nil
	case err == nil || errors.Is(err, context.DeadlineExceeded):
		return &LagError{Tenant: id, Step: step, Version: version, MaxLag: m.maxLag(), Lagging: p.Lagging}
	}
	return fmt.Errorf("wait for tenant %s at version %d (step %s): %w", id, version, step, err)
}

// sameMove reports whether a and b are the same move (any step).
func sameMove(a, b *tenant.Migration) bool {
	return a != nil && b != nil && a.From == b.From && a.To == b.To && a.Started.Equal(b.Started)
}

// Run drives tenant id's move to its end. With to (a JSON object, see
// Target) and no move in progress it starts one; with a move in progress
// it resumes it from its stored step (to, if given, must name the same
// target). It returns the tenant as the last step left it: COMPLETE, or an
// error — *AwaitingCopyError, *LagError, *EndedError, an Invalid or
// MoveConflict *tenant.Error for input it refuses (having changed nothing),
// or the catalog's error.
func (m *Mover) Run(ctx context.Context, id string, to json.RawMessage) (*tenant.Tenant, error) {
	if err := tenant.ValidateID(id); err != nil {
		return nil, err
	}
	var driving *tenant.Migration
	// startedHere: this Run started the move, so Copied (the operator's word
	// that the copy is done) predates the read-only flag and does not count.
	startedHere := false
	for conflicts := 0; ; {
		raw, cur, err := m.read(ctx, id)
		if err != nil {
			return nil, err
		}
		mg := cur.Migration
		if driving != nil && (!sameMove(driving, mg) || !mg.Step.Active()) {
			if mg != nil && sameMove(driving, mg) && mg.Step == tenant.MoveComplete {
				return cur, nil
			}
			return nil, &EndedError{Tenant: id, Migration: mg, Version: cur.Version, By: cur.UpdatedBy}
		}
		var next *tenant.Tenant
		switch {
		case !cur.Moving():
			if next, err = m.start(ctx, raw, cur, to); next == nil && err == nil {
				return cur, nil // complete already
			}
			startedHere = err == nil
		default:
			if to != nil {
				target, err := merge(mg.From, to)
				if err != nil {
					return nil, err
				}
				if !tenant.SameDatabase(target, mg.To) {
					return nil, tenant.Errorf(tenant.MoveConflict, "tenant %s is moving to %s (step %s, started by %s): finish it (tcsctl move %s), or cancel or reverse it, before moving it to %s",
						id, DatabaseName(mg.To), mg.Step, mg.By, id, DatabaseName(target))
				}
			}
			driving = mg
			next, err = m.step(ctx, raw, cur, m.Copied && !startedHere)
		}
		switch {
		case errors.Is(err, errRetry):
			if conflicts++; conflicts > maxConflicts {
				return nil, fmt.Errorf("tenant %s changed %d times while the move tried to write it: try again later", id, conflicts)
			}
			continue
		case err != nil:
			return nil, err
		}
		if driving == nil {
			driving = next.Migration
		}
		if next.Migration.Step == tenant.MoveComplete {
			return next, nil
		}
	}
}

// start starts a move of cur to to: nil, nil when cur's last move is
// complete and to is nil or names its target (a Run resumed after it wrote
// COMPLETE).
func (m *Mover) start(ctx context.Context, raw map[string]any, cur *tenant.Tenant, to json.RawMessage) (*tenant.Tenant, error) {
	last := cur.Migration
	if to == nil {
		if last != nil && last.Step == tenant.MoveComplete {
			m.logf("%s: its last move, to %s, is COMPLETE (version %d)", cur.ID, DatabaseName(last.To), cur.Version)
			return nil, nil
		}
		if last != nil {
			return nil, tenant.Errorf(tenant.Invalid, "tenant %s has no move in progress (its last move ended %s at %s); give --to to start one", cur.ID, last.Step, DatabaseName(last.To))
		}
		return nil, tenant.Errorf(tenant.Invalid, "tenant %s has no move in progress; give --to to start one", cur.ID)
	}
	if cur.Database == nil {
		return nil, tenant.Errorf(tenant.Invalid, "tenant %s has no database to move", cur.ID)
	}
	target, err := merge(*cur.Database, to)
	if err != nil {
		return nil, err
	}
	if tenant.SameDatabase(target, *cur.Database) {
		if last != nil && last.Step == tenant.MoveComplete && tenant.SameDatabase(last.To, target) {
			m.logf("%s: the move to %s is COMPLETE already (version %d)", cur.ID, DatabaseName(last.To), cur.Version)
			return nil, nil
		}
		return nil, tenant.Errorf(tenant.Invalid, "--to names the database tenant %s is on already (%s)", cur.ID, DatabaseName(target))
	}
	return m.write(ctx, cur.ID, raw, cur.Version, &tenant.Migration{Step: tenant.MovePrepared, From: *cur.Database, To: target}, cur.Database)
}

// step takes the move of cur one step on.
// copied says the operator's word that the copy is done counts.
func (m *Mover) step(ctx context.Context, raw map[string]any, cur *tenant.Tenant, copied bool) (*tenant.Tenant, error) {
	mg := *cur.Migration
	switch mg.Step {
	case tenant.MovePrepared:
		if err := m.barrier(ctx, cur.ID, mg.Step, cur.Version); err != nil {
			return nil, err
		}
		job := CopyJob{Tenant: cur.ID, From: mg.From, To: mg.To}
		switch {
		case m.Copy != nil:
			m.logf("%s: copying %s to %s", cur.ID, DatabaseName(mg.From), DatabaseName(mg.To))
			if err := m.Copy(ctx, job); err != nil {
				return nil, fmt.Errorf("copy tenant %s (the move stays at step %s; run again to retry the copy): %w", cur.ID, mg.Step, err)
			}
		case !copied:
			return nil, &AwaitingCopyError{Job: job, Version: cur.Version}
		}
		mg.Step = tenant.MoveCopied
		return m.write(ctx, cur.ID, raw, cur.Version, &mg, cur.Database)
	case tenant.MoveCopied:
		// Refuse to switch while any region lags: the barrier must hold at
		// the current version (after a resume, nothing else proves it).
		if err := m.barrier(ctx, cur.ID, mg.Step, cur.Version); err != nil {
			return nil, err
		}
		mg.Step = tenant.MoveSwitched
		return m.write(ctx, cur.ID, raw, cur.Version, &mg, &mg.To)
	case tenant.MoveSwitched:
		if err := m.barrier(ctx, cur.ID, mg.Step, cur.Version); err != nil {
			return nil, err
		}
		mg.Step = tenant.MoveComplete
		return m.write(ctx, cur.ID, raw, cur.Version, &mg, cur.Database)
	}
	return nil, fmt.Errorf("tenant %s: move step %s is not one this build knows", cur.ID, mg.Step)
}

// Cancel ends tenant id's move where it stands (step CANCELLED): the
// database stays at From before the switch and at To after it, and the
// tenant is writable. It then waits for the barrier at the version written
// (see Mover.end). It refuses (Invalid) a tenant with no move in progress;
// on a move CANCELLED already (an earlier Cancel whose wait ran out of
// MaxLag) it writes nothing and waits again.
func (m *Mover) Cancel(ctx context.Context, id string) (*tenant.Tenant, error) {
	return m.end(ctx, id, "cancel", func(cur *tenant.Tenant) (*tenant.Migration, error) {
		mg := *cur.Migration
		mg.Step = tenant.MoveCancelled
		return &mg, nil
	})
}

// Reverse undoes tenant id's move. Before the switch it ends it REVERSED
// (the database never left From). After it — SWITCHED, or COMPLETE as the
// tenant's last move — it starts a new move back, To → From, at PREPARED
// (read-only again: writes that reached To since the switch must be copied
// back); Run drives it on. It then waits for the barrier at the version
// written (see Mover.end). It refuses (Invalid) a tenant with nothing to
// reverse; on a move REVERSED already it writes nothing and waits again
// (after the switch, run Run to drive the move back on).
func (m *Mover) Reverse(ctx context.Context, id string) (*tenant.Tenant, error) {
	return m.end(ctx, id, "reverse", func(cur *tenant.Tenant) (*tenant.Migration, error) {
		mg := *cur.Migration
		switch mg.Step {
		case tenant.MovePrepared, tenant.MoveCopied:
			mg.Step = tenant.MoveReversed
			return &mg, nil
		case tenant.MoveSwitched, tenant.MoveComplete:
			if cur.Database == nil || *cur.Database != mg.To {
				return nil, tenant.Errorf(tenant.Invalid, "tenant %s is no longer on %s, where its last move went: nothing to reverse", id, DatabaseName(mg.To))
			}
			return &tenant.Migration{Step: tenant.MovePrepared, From: mg.To, To: mg.From}, nil
		}
		return nil, tenant.Errorf(tenant.Invalid, "tenant %s has no move to reverse (its last move ended %s)", id, mg.Step)
	})
}

// end writes the migration decide returns for the tenant's move, then waits
// for the barrier at the version written, at most MaxLag. Past it, or when
// ctx ends during the wait, it returns the tenant written with the error (a
// *LagError with Verb set, or ctx's): the write stands.
func (m *Mover) end(ctx context.Context, id, verb string, decide func(*tenant.Tenant) (*tenant.Migration, error)) (*tenant.Tenant, error) {
	if err := tenant.ValidateID(id); err != nil {
		return nil, err
	}
	for conflicts := 0; ; conflicts++ {
		raw, cur, err := m.read(ctx, id)
		if err != nil {
			return nil, err
		}
		if cur.Migration != nil && cur.Migration.Step == endedBy[verb] {
			// Ended so already: by an earlier run whose wait ran out of
			// --max-lag, or by someone else. Nothing to write: wait again
			// for the barrier, at the version now stored.
			m.logf("%s: its move to %s is %s already (version %d); waiting for every region to reach it", id, DatabaseName(cur.Migration.To), cur.Migration.Step, cur.Version)
			return m.endWait(ctx, id, verb, cur)
		}
		if cur.Migration == nil || !cur.Moving() && !(verb == "reverse" && cur.Migration.Step == tenant.MoveComplete) {
			return nil, tenant.Errorf(tenant.Invalid, "tenant %s has no move in progress to %s", id, verb)
		}
		mg, err := decide(cur)
		if err != nil {
			return nil, err
		}
		next, err := m.write(ctx, id, raw, cur.Version, mg, cur.Database)
		if errors.Is(err, errRetry) && conflicts < maxConflicts {
			continue
		}
		if err != nil {
			return nil, err
		}
		return m.endWait(ctx, id, verb, next)
	}
}

// endedBy is the step each of end's verbs leaves a move at before the
// switch; running the verb again on a move at that step only waits.
var endedBy = map[string]tenant.MoveStep{"cancel": tenant.MoveCancelled, "reverse": tenant.MoveReversed}

// endWait waits for the barrier at t's version, after end wrote it (or
// found it written), and returns t, with the error if the wait failed.
func (m *Mover) endWait(ctx context.Context, id, verb string, t *tenant.Tenant) (*tenant.Tenant, error) {
	if err := m.barrier(ctx, id, t.Migration.Step, t.Version); err != nil {
		var lag *LagError
		if errors.As(err, &lag) {
			lag.Verb = verb
		}
		return t, err
	}
	return t, nil
}

// Report is what Status says of a tenant's move.
type Report struct {
	Tenant    string            `json:"tenant"`
	Version   int64             `json:"version"`
	Database  *tenant.Database  `json:"database,omitempty"`
	Migration *tenant.Migration `json:"migration,omitempty"`
	// Propagation is how far the current version has reached, while a move
	// is in progress (nil otherwise, or when PropagationError says why not).
	Propagation      *httpclient.Propagation `json:"propagation,omitempty"`
	PropagationError string                  `json:"propagation_error,omitempty"`
	// Next says what to run next.
	Next string `json:"next"`
}

// Status reports tenant id's move: its step and, while it is in progress,
// who has not reached the current version.
func Status(ctx context.Context, c Catalog, id string) (Report, error) {
	if err := tenant.ValidateID(id); err != nil {
		return Report{}, err
	}
	m := &Mover{Catalog: c}
	_, cur, err := m.read(ctx, id)
	if err != nil {
		return Report{}, err
	}
	r := Report{Tenant: id, Version: cur.Version, Database: cur.Database, Migration: cur.Migration}
	mg := cur.Migration
	switch {
	case mg == nil:
		r.Next = fmt.Sprintf(`no move recorded; start one with: tcsctl move %s --to '{"host":…}'`, id)
		return r, nil
	case mg.Step == tenant.MovePrepared:
		r.Next = fmt.Sprintf("copy %s to %s, then: tcsctl move %s --copied (or let tcsctl copy: tcsctl move %s --copy-cmd …)", DatabaseName(mg.From), DatabaseName(mg.To), id, id)
	case mg.Step.Active():
		r.Next = "resume with: tcsctl move " + id
	case mg.Step == tenant.MoveComplete:
		r.Next = "the move is complete; the old database may be retired (tcsctl move reverse " + id + " would move the tenant back)"
		return r, nil
	default:
		r.Next = "the move has ended; the tenant is on " + DatabaseName(derefDB(cur.Database))
		return r, nil
	}
	p, err := c.Propagation(ctx, id, cur.Version, 0)
	if err != nil {
		if ctx.Err() != nil {
			return Report{}, ctx.Err()
		}
		r.PropagationError = err.Error()
		return r, nil
	}
	r.Propagation = &p
	return r, nil
}

func derefDB(d *tenant.Database) tenant.Database {
	if d == nil {
		return tenant.Database{}
	}
	return *d
}

// Lagging returns who has not reached the report's version ("" when done or
// unknown), sorted.
func (r Report) Lagging() []string {
	if r.Propagation == nil {
		return nil
	}
	return slices.Sorted(slices.Values(r.Propagation.Lagging))
}
