package catalog

import (
	"fmt"
	"slices"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// CheckMove decides whether a write may take a tenant from prev (the live
// stored document; nil for a create) to next (nil for a delete) as far as
// its move goes (tenant.Migration; the workflow is tcsctl move, see
// docs/moves.md). PlanWrite runs it on every write, so that both stores
// keep the rules and a buggy or concurrent tcsctl, or a PATCH, cannot
// corrupt a move. It returns a MoveConflict *tenant.Error naming the step.
//
//  1. A create may carry a migration only where its database pointer is
//     consistent with the step (as rule 5 places it; CANCELLED at From or
//     To): a restore (tcsctl backfill of an export) keeps a tenant's move
//     record. Moves themselves start on stored tenants (rule 4).
//  2. A delete, and a write that drops the migration, is refused while a
//     move is in progress: cancel it first.
//  3. While a move is in progress and the write leaves the migration as it
//     is, the database pointer must not change (other fields may).
//  4. A move starts (from no move, or an ended one) at PREPARED, with From
//     the current database, To another database, and the pointer unchanged.
//  5. Within a move, From, To, Started and By never change, and the step
//     moves only along: PREPARED → COPIED → SWITCHED → COMPLETE, PREPARED
//     or COPIED → CANCELLED or REVERSED, SWITCHED → CANCELLED, with the
//     pointer at From until SWITCHED and at To from then on.
//  6. Reversing a SWITCHED move starts a new one back (PREPARED, From the
//     old To, To the old From), as rule 4 without an ended move.
//  7. An ended move's record is kept as it is, dropped, or replaced by a
//     new move (rule 4).
func CheckMove(prev, next *tenant.Tenant) error {
	if prev == nil {
		if next == nil || next.Migration == nil {
			return nil
		}
		return checkMoveCreate(next)
	}
	old := prev.Migration
	moving := prev.Moving()
	if next == nil {
		if moving {
			return moveConflict("tenant %q is moving (step %s, to %s): cancel the move (tcsctl move cancel %s) before deleting it", prev.ID, old.Step, dbName(old.To), prev.ID)
		}
		return nil
	}
	m := next.Migration
	switch {
	case m == nil:
		if moving {
			return moveConflict("tenant %q is moving (step %s, to %s): the migration is ended by tcsctl move cancel or reverse, not dropped", prev.ID, old.Step, dbName(old.To))
		}
		return nil
	case old != nil && sameMigration(old, m):
		if moving && !sameDBPointer(prev.Database, next.Database) {
			return moveConflict("tenant %q is moving (step %s, to %s): its database is changed only by the move (tcsctl move %s), or cancel it first", prev.ID, old.Step, dbName(old.To), prev.ID)
		}
		return nil
	}
	if old == nil || !moving {
		return checkMoveStart(prev, next, old)
	}
	// Reverse after the switch: a new move back.
	if old.Step == tenant.MoveSwitched && m.Step == tenant.MovePrepared && m.From == old.To && m.To == old.From {
		return checkMoveStart(prev, next, nil)
	}
	if m.From != old.From || m.To != old.To || !m.Started.Equal(old.Started) || m.By != old.By {
		return moveConflict("tenant %q is moving (step %s, to %s): from, to, started and by do not change within a move; cancel it to start another", prev.ID, old.Step, dbName(old.To))
	}
	var at tenant.Database // where the pointer must be after the step
	switch {
	case old.Step == tenant.MovePrepared && m.Step == tenant.MoveCopied,
		(old.Step == tenant.MovePrepared || old.Step == tenant.MoveCopied) && (m.Step == tenant.MoveCancelled || m.Step == tenant.MoveReversed):
		at = old.From
	case old.Step == tenant.MoveCopied && m.Step == tenant.MoveSwitched,
		old.Step == tenant.MoveSwitched && (m.Step == tenant.MoveComplete || m.Step == tenant.MoveCancelled):
		at = old.To
	default:
		return moveConflict("tenant %q is moving (step %s, to %s): step %s → %s is not allowed (from %s: %s)", prev.ID, old.Step, dbName(old.To), old.Step, m.Step, old.Step, nextSteps(old.Step))
	}
	if next.Database == nil || *next.Database != at {
		return moveConflict("tenant %q: step %s → %s must leave the database at %s, not %s", prev.ID, old.Step, m.Step, dbName(at), dbPtrName(next.Database))
	}
	return nil
}

// checkMoveCreate checks rule 1.
func checkMoveCreate(next *tenant.Tenant) error {
	m := next.Migration
	at := []tenant.Database{m.From}
	switch m.Step {
	case tenant.MoveSwitched, tenant.MoveComplete:
		at = []tenant.Database{m.To}
	case tenant.MoveCancelled:
		at = append(at, m.To)
	}
	switch {
	case tenant.SameDatabase(m.From, m.To):
		return moveConflict("tenant %q: its migration goes to the database it comes from (%s)", next.ID, dbName(m.To))
	case next.Database == nil || !slices.Contains(at, *next.Database):
		return moveConflict("tenant %q: a migration at step %s leaves the database at %s, not %s", next.ID, m.Step, dbName(at[0]), dbPtrName(next.Database))
	}
	return nil
}

// checkMoveStart checks rule 4: next starts a move; old is the ended move
// it replaces, if any.
func checkMoveStart(prev, next *tenant.Tenant, old *tenant.Migration) error {
	m := next.Migration
	switch {
	case m.Step != tenant.MovePrepared:
		if old != nil && !old.Step.Active() {
			return moveConflict("tenant %q: its move has ended (step %s): the record is kept as it is, dropped, or replaced by a new move at %s, not set to %s", prev.ID, old.Step, tenant.MovePrepared, m.Step)
		}
		return moveConflict("tenant %q: a move starts at step %s, not %s", prev.ID, tenant.MovePrepared, m.Step)
	case prev.Database == nil:
		return moveConflict("tenant %q has no database to move", prev.ID)
	case m.From != *prev.Database:
		return moveConflict("tenant %q: a move starts from the current database %s, not %s", prev.ID, dbName(*prev.Database), dbName(m.From))
	case tenant.SameDatabase(m.From, m.To):
		return moveConflict("tenant %q: the move goes to the database it is on (%s)", prev.ID, dbName(m.To))
	case !sameDBPointer(prev.Database, next.Database):
		return moveConflict("tenant %q: the write that starts a move leaves the database at %s; the pointer moves at step %s", prev.ID, dbName(m.From), tenant.MoveSwitched)
	}
	return nil
}

// stampMove sets Started and By of a move that next starts (CheckMove
// accepted it): when and by whom, from the write itself.
func stampMove(prev, next *tenant.Tenant, actor string, at time.Time) {
	m := next.Migration
	if m == nil || m.Step != tenant.MovePrepared {
		return
	}
	if old := prev.Migration; old != nil && old.Step == tenant.MovePrepared && sameMigration(old, m) {
		return
	}
	m.Started, m.By = at, actor
}

func nextSteps(s tenant.MoveStep) string {
	switch s {
	case tenant.MovePrepared:
		return "COPIED, CANCELLED or REVERSED"
	case tenant.MoveCopied:
		return "SWITCHED, CANCELLED or REVERSED"
	case tenant.MoveSwitched:
		return "COMPLETE, CANCELLED, or PREPARED back to the old database (reverse)"
	}
	return "none"
}

// sameMigration compares two migrations ignoring ReadOnly (derived from
// Step) and comparing times by instant.
func sameMigration(a, b *tenant.Migration) bool {
	return a.Step == b.Step && a.From == b.From && a.To == b.To && a.Started.Equal(b.Started) && a.By == b.By
}

func sameDBPointer(a, b *tenant.Database) bool {
	return a == b || a != nil && b != nil && *a == *b
}

func dbName(d tenant.Database) string {
	return fmt.Sprintf("%s %s:%d/%s", d.Engine, d.Host, d.Port, d.Name)
}

func dbPtrName(d *tenant.Database) string {
	if d == nil {
		return "none"
	}
	return dbName(*d)
}

func moveConflict(format string, args ...any) error {
	return tenant.Errorf(tenant.MoveConflict, format, args...)
}
