// Package nodeprobe asks tcs lookup nodes (tcs/lookup) how far a tenant's
// change has reached, for catalog/propagation: Local for the nodes of this
// process (tcs-dev, tests), which it also registers and heartbeats; Remote
// for nodes in other processes, over ReplicaAdmin.TenantStatus.
package nodeprobe

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// Local is the lookup servers of this process: Serve registers one in a
// propagation.Table and heartbeats it, and Probe calls its TenantStatus.
type Local struct {
	table *propagation.Table

	mu      sync.Mutex
	servers map[propagation.Node]*lookup.Server
}

var _ propagation.Prober = (*Local)(nil)

// NewLocal returns a Local that registers its servers in table.
func NewLocal(table *propagation.Table) *Local {
	return &Local{table: table, servers: map[propagation.Node]*lookup.Server{}}
}

// Serve registers s as node n and heartbeats it every interval
// (propagation.DefaultHeartbeatInterval if interval <= 0) until ctx ends;
// then it stops heartbeating and returns, and the table drops n after its
// bound, as it would a node that died.
func (l *Local) Serve(ctx context.Context, n propagation.Node, s *lookup.Server, interval time.Duration) {
	if interval <= 0 {
		interval = propagation.DefaultHeartbeatInterval
	}
	l.mu.Lock()
	l.servers[n] = s
	l.mu.Unlock()
	l.table.Heartbeat(n)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.table.Heartbeat(n)
		}
	}
}

// Probe implements propagation.Prober.
func (l *Local) Probe(ctx context.Context, n propagation.Node, tenantID string, version int64) (propagation.NodeStatus, error) {
	l.mu.Lock()
	s := l.servers[n]
	l.mu.Unlock()
	if s == nil {
		return propagation.NodeStatus{}, fmt.Errorf("node %s is not a lookup server of this process", n)
	}
	st, err := s.TenantStatus(ctx, tenantID, version)
	if err != nil {
		return propagation.NodeStatus{}, err
	}
	return FromLookup(st), nil
}

// FromLookup converts a lookup node's TenantStatus.
func FromLookup(st lookup.TenantStatus) propagation.NodeStatus {
	return propagation.NodeStatus{
		ReplicaVersion: st.ReplicaVersion,
		CachedVersion:  st.CachedVersion,
		CachedOther:    st.CachedOther,
		FeedVersion:    st.FeedVersion,
		FeedUp:         st.FeedUp,
		Served:         st.Served,
		Clients: propagation.ClientCounts{
			Acknowledged: st.Clients.Acknowledged,
			Lagging:      st.Clients.Lagging,
			NotAcking:    st.Clients.NotAcking,
		},
	}
}
