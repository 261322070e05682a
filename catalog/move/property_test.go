package move_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/tcs-dev/tcs/catalog"
	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/catalog/move"
	"github.com/tcs-dev/tcs/catalog/tenant"
)

// TestMoveProperty: whatever operators do — runs killed after any step,
// runs resumed with or without --to, runs to other targets, cancels,
// reverses, label edits, in any order — the tenant's audit history keeps
// the move's rules:
//
//   - the database pointer changes only in a COPIED → SWITCHED write, to the
//     move's To;
//   - read_only is true exactly at PREPARED and COPIED;
//   - a COPIED write follows a barrier wait at a version of the move's
//     PREPARED (or later) write, and a SWITCHED write one at its COPIED (or
//     later) write: nothing switches unseen;
//   - COMPLETE follows SWITCHED, SWITCHED follows COPIED, COPIED follows
//     PREPARED, within one move.
//
// Every error an operation returns is one the workflow documents.
func TestMoveProperty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	targets := []json.RawMessage{toNew, json.RawMessage(`{"host":"db-1.internal"}`), json.RawMessage(`{"host":"db-3.internal"}`), nil}
	n := 0
	rapid.Check(t, func(rt *rapid.T) {
		n++
		id := fmt.Sprintf("prop-%d", n)
		h.create(t, id)
		ops := rapid.SliceOfN(rapid.IntRange(0, 5), 1, 8).Draw(rt, "ops")
		for i, op := range ops {
			var err error
			switch op {
			case 0, 1, 2: // a run, killed after a drawn step or not
				m := h.mover()
				m.Copy = func(context.Context, move.CopyJob) error { return nil }
				kill := rapid.SampledFrom([]tenant.MoveStep{"", tenant.MovePrepared, tenant.MoveCopied, tenant.MoveSwitched, tenant.MoveComplete}).Draw(rt, fmt.Sprintf("kill%d", i))
				m.AfterWrite = func(s tenant.MoveStep, _ int64) error {
					if s == kill {
						return errKilled
					}
					return nil
				}
				to := targets[rapid.IntRange(0, len(targets)-1).Draw(rt, fmt.Sprintf("to%d", i))]
				_, err = m.Run(context.Background(), id, to)
			case 3:
				_, err = h.mover().Cancel(context.Background(), id)
			case 4:
				_, err = h.mover().Reverse(context.Background(), id)
			case 5:
				cur := h.get(t, id)
				_, err = h.api.Patch(context.Background(), id, cur.Version, httpclient.MergePatch{"labels": map[string]any{"edit": fmt.Sprint(i)}})
			}
			var ended *move.EndedError
			switch code := tenant.ErrorCode(err); {
			case err == nil, errors.Is(err, errKilled), errors.As(err, &ended),
				code == tenant.Invalid, code == tenant.MoveConflict:
			default:
				rt.Fatalf("op %d (%d): unexpected error %v", i, op, err)
			}
		}
		checkHistory(rt, h, id)
	})
}

func checkHistory(rt *rapid.T, h *harness, id string) {
	recs, err := h.store.History(context.Background(), id, catalog.HistoryOptions{Limit: catalog.MaxPageSize})
	if err != nil {
		rt.Fatal(err)
	}
	slices.Reverse(recs)
	h.mu.Lock()
	waits := slices.Clone(h.waitedFor[id])
	h.mu.Unlock()
	waitedBetween := func(lo, hi int64) bool {
		return slices.ContainsFunc(waits, func(v int64) bool { return v >= lo && v < hi })
	}
	// stepAt: the version at which the current move reached each step.
	stepAt := map[tenant.MoveStep]int64{}
	for _, r := range recs {
		before, after := r.Before, r.After
		if before == nil || after == nil {
			continue
		}
		m := after.Migration
		if after.ReadOnly() != (m != nil && m.Step.ReadOnly()) {
			rt.Fatalf("version %d: read_only %v at step %+v", r.Version, after.ReadOnly(), m)
		}
		if *before.Database != *after.Database &&
			(m == nil || m.Step != tenant.MoveSwitched || before.Migration.Step != tenant.MoveCopied || *after.Database != m.To) {
			rt.Fatalf("version %d: the database moved %s → %s outside a switch (%+v → %+v)", r.Version,
				move.DatabaseName(*before.Database), move.DatabaseName(*after.Database), before.Migration, m)
		}
		if m == nil || before.Migration != nil && before.Migration.Step == m.Step && before.Migration.Started.Equal(m.Started) {
			continue // no step taken
		}
		switch m.Step {
		case tenant.MovePrepared:
			stepAt = map[tenant.MoveStep]int64{tenant.MovePrepared: r.Version}
		case tenant.MoveCopied:
			if stepAt[tenant.MovePrepared] == 0 || !waitedBetween(stepAt[tenant.MovePrepared], r.Version) {
				rt.Fatalf("version %d: COPIED without a barrier wait since PREPARED (%v; waits %v)", r.Version, stepAt, waits)
			}
		case tenant.MoveSwitched:
			if stepAt[tenant.MoveCopied] == 0 || !waitedBetween(stepAt[tenant.MoveCopied], r.Version) {
				rt.Fatalf("version %d: SWITCHED without a barrier wait since COPIED (%v; waits %v)", r.Version, stepAt, waits)
			}
		case tenant.MoveComplete:
			if stepAt[tenant.MoveSwitched] == 0 || !waitedBetween(stepAt[tenant.MoveSwitched], r.Version) {
				rt.Fatalf("version %d: COMPLETE without a barrier wait since SWITCHED (%v; waits %v)", r.Version, stepAt, waits)
			}
		}
		stepAt[m.Step] = r.Version
	}
}
