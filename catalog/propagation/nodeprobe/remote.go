package nodeprobe

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/tcs-dev/tcs/catalog/propagation"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// Remote asks nodes in other processes, over gRPC at their Node.Addr
// (tcs.admin.v1.ReplicaAdmin/TenantStatus, which needs a replica-scan
// credential: give it, and TLS, in the dial options). It keeps one
// connection per address until Close.
type Remote struct {
	opts func(addr string) []grpc.DialOption

	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

var _ propagation.Prober = (*Remote)(nil)

// NewRemote returns a Remote that dials nodes with opts.
func NewRemote(opts ...grpc.DialOption) *Remote {
	return NewRemoteFunc(func(string) []grpc.DialOption { return opts })
}

// NewRemoteFunc returns a Remote that dials each node's address with
// opts(addr): say, TLS to nodes off loopback and plaintext to those on it.
func NewRemoteFunc(opts func(addr string) []grpc.DialOption) *Remote {
	return &Remote{opts: opts, conns: map[string]*grpc.ClientConn{}}
}

// errClosed is Probe's error after Close.
var errClosed = errors.New("nodeprobe: Remote closed")

func (r *Remote) conn(addr string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, errClosed
	}
	if c, ok := r.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, r.opts(addr)...)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", addr, err)
	}
	r.conns[addr] = c
	return c, nil
}

// Probe implements propagation.Prober.
func (r *Remote) Probe(ctx context.Context, n propagation.Node, tenantID string, version int64) (propagation.NodeStatus, error) {
	if n.Addr == "" {
		return propagation.NodeStatus{}, fmt.Errorf("node %s has no address", n)
	}
	c, err := r.conn(n.Addr)
	if err != nil {
		return propagation.NodeStatus{}, err
	}
	res, err := adminv1.NewReplicaAdminClient(c).TenantStatus(ctx, &adminv1.TenantStatusRequest{TenantId: tenantID, Version: version})
	if err != nil {
		return propagation.NodeStatus{}, err
	}
	return FromLookup(lookup.TenantStatus{
		Region:         res.GetRegion(),
		ReplicaVersion: res.GetReplicaVersion(),
		CachedVersion:  res.GetCachedVersion(),
		CachedOther:    res.GetCachedOther(),
		FeedVersion:    res.GetFeedVersion(),
		FeedUp:         res.GetFeedUp(),
		Served:         res.GetServed(),
		Clients: lookup.ClientCounts{
			Acknowledged: int(res.GetClientsAcknowledged()),
			Lagging:      int(res.GetClientsLagging()),
			NotAcking:    int(res.GetClientsNotAcking()),
		},
	}), nil
}

// Close closes every connection; Probe fails afterwards.
func (r *Remote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	var errs []error
	for addr, c := range r.conns {
		errs = append(errs, c.Close())
		delete(r.conns, addr)
	}
	return errors.Join(errs...)
}
