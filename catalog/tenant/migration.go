package tenant

import (
	"fmt"
	"time"
)

// MoveStep is where a tenant move (tcsctl move) stands. A move runs
// PREPARED → COPIED → SWITCHED → COMPLETE; CANCELLED and REVERSED end it
// early. The catalog refuses any other transition (catalog.CheckMove).
type MoveStep string

// Move steps. While a move is PREPARED or COPIED the tenant is read-only:
// compute nodes must stop writing to its database (Tenant.ReadOnly) so
// that the copy to the new database is complete.
const (
	// MovePrepared: the move has started; the database pointer is still
	// From and the tenant is read-only.
	MovePrepared MoveStep = "PREPARED"
	// MoveCopied: the operator's copy of From to To is done; still
	// read-only, still pointing at From.
	MoveCopied MoveStep = "COPIED"
	// MoveSwitched: the pointer is To and the tenant writable again, in the
	// same write; the move waits for every node to serve it.
	MoveSwitched MoveStep = "SWITCHED"
	// MoveComplete: every region, node and acknowledging client cache
	// served the new pointer; From may be retired.
	MoveComplete MoveStep = "COMPLETE"
	// MoveCancelled: the move was abandoned; the pointer stays where it was
	// (From before the switch, To after it).
	MoveCancelled MoveStep = "CANCELLED"
	// MoveReversed: the move was undone before the switch; the pointer
	// never left From. (Reversing after the switch starts a new move,
	// To → From.)
	MoveReversed MoveStep = "REVERSED"
)

// Active reports whether a move at step s is in progress (not ended).
func (s MoveStep) Active() bool {
	return s == MovePrepared || s == MoveCopied || s == MoveSwitched
}

// ReadOnly reports whether a tenant whose move is at step s is read-only.
func (s MoveStep) ReadOnly() bool { return s == MovePrepared || s == MoveCopied }

func (s MoveStep) known() bool {
	switch s {
	case MovePrepared, MoveCopied, MoveSwitched, MoveComplete, MoveCancelled, MoveReversed:
		return true
	}
	return false
}

// Migration is the state of a tenant's move to another database, kept in
// the tenant document so that each step of the workflow is one ordinary
// versioned write: atomic with the database pointer, audited, propagated
// and stored like any other change. It is written by tcsctl move (through
// the REST API) and checked by the catalog on every write (see
// catalog.CheckMove). A tenant keeps the record of its last move, ended or
// not, until the next move replaces it.
type Migration struct {
	Step MoveStep `json:"step"`
	// ReadOnly tells compute nodes to stop writing to the tenant's
	// database: true exactly while Step is PREPARED or COPIED (Prepare
	// sets it from Step).
	ReadOnly bool `json:"read_only"`
	// From is the database the move leaves, To the one it goes to.
	From Database `json:"from"`
	To   Database `json:"to"`
	// Started and By are when and by whom the move started, set by the
	// catalog from the write that started it.
	Started time.Time `json:"started,omitzero"`
	By      string    `json:"by,omitempty"`
}

// Moving reports whether a move of t is in progress.
func (t *Tenant) Moving() bool { return t.Migration != nil && t.Migration.Step.Active() }

// ReadOnly reports whether compute nodes must not write to t's database
// now: a move is copying it elsewhere. The tenant's status is unaffected
// (a moving tenant stays ACTIVE).
func (t *Tenant) ReadOnly() bool { return t.Migration != nil && t.Migration.ReadOnly }

// SameDatabase reports whether a and b name the same database: the same
// engine, host, port and name (region and secret reference aside).
func SameDatabase(a, b Database) bool {
	return a.Engine == b.Engine && a.Host == b.Host && a.Port == b.Port && a.Name == b.Name
}

func prepareMigration(v *validator, m *Migration) {
	if !m.Step.known() {
		v.check("migration.step", fmt.Sprintf("must be one of %s, %s, %s, %s, %s or %s; got %q",
			MovePrepared, MoveCopied, MoveSwitched, MoveComplete, MoveCancelled, MoveReversed, m.Step))
	}
	m.ReadOnly = m.Step.ReadOnly()
	prepareDatabaseAt(v, "migration.from", &m.From)
	prepareDatabaseAt(v, "migration.to", &m.To)
	v.check("migration.by", printableReason(m.By, MaxUpdatedByLen))
}

// MaxUpdatedByLen bounds migration.by (an actor name).
const MaxUpdatedByLen = 256
