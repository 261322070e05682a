package propagation

import (
	"context"
	"sync"
	"time"
)

// How often nodes heartbeat into a Table (tcs-dev's), and the default bound
// after which a silent node is dropped: three heartbeats.
const (
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultHeartbeatBound    = 3 * DefaultHeartbeatInterval
)

// Table is an in-process Registry: nodes call Heartbeat every few seconds
// (tcs-dev does for its servers); a node not heard from for the bound is
// dropped from the live set and reported as Dropped until it has been
// silent for ten bounds, then forgotten. Remove takes a node out at once (a
// clean stop). Safe for concurrent use.
type Table struct {
	bound time.Duration
	now   func() time.Time

	mu    sync.Mutex
	nodes map[nodeKey]tableEntry
}

type nodeKey struct{ region, id string }

type tableEntry struct {
	node Node
	last time.Time
}

var _ Registry = (*Table)(nil)

// NewTable returns an empty Table that drops a node after bound without a
// heartbeat (DefaultHeartbeatBound if bound <= 0). A nil now is time.Now.
func NewTable(bound time.Duration, now func() time.Time) *Table {
	if bound <= 0 {
		bound = DefaultHeartbeatBound
	}
	if now == nil {
		now = time.Now
	}
	return &Table{bound: bound, now: now, nodes: map[nodeKey]tableEntry{}}
}

// Heartbeat records that n is alive now (and where it serves).
func (t *Table) Heartbeat(n Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[nodeKey{n.Region, n.ID}] = tableEntry{node: n, last: t.now()}
}

// Remove takes n out of the table: a node that stops cleanly.
func (t *Table) Remove(n Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.nodes, nodeKey{n.Region, n.ID})
}

// Nodes implements Registry.
func (t *Table) Nodes(context.Context) (live []Node, dropped []Dropped, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for k, e := range t.nodes {
		switch age := now.Sub(e.last); {
		case age <= t.bound:
			live = append(live, e.node)
		case age <= 10*t.bound:
			dropped = append(dropped, Dropped{Node: e.node, LastHeartbeat: e.last})
		default:
			delete(t.nodes, k)
		}
	}
	return live, dropped, nil
}
