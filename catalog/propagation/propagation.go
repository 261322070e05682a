// Package propagation tells how far one tenant's change has reached: per
// region, the replica's version, each live tcs node's cached and served
// version and its feed, and how many of the nodes' Watch clients have
// acknowledged it (issue 13). It is the barrier the catalog's
// GET /v1/tenants/{id}/propagation, tcsctl wait and tenant moves wait on.
//
// The parts:
//
//   - A Registry lists the live nodes of every region. Table is the
//     in-process one: nodes heartbeat into it, and a node whose heartbeat is
//     older than its bound is dropped from the set and reported (Dropped)
//     until it has been silent for ten bounds.
//     Cached keeps a Registry's answer for a second, so that waits polling
//     at once read a remote registry (catalog/propagation/dynamonodes) once.
//   - A Prober asks one node about one tenant (tcs/lookup's
//     Server.TenantStatus, in process or over ReplicaAdmin.TenantStatus).
//   - A Checker puts them together: Check asks every live node at once,
//     Wait asks again until done or its context ends.
//
// Done means: every configured region has at least one live node, and every
// live node of every region answered, serves version or newer (its replica
// has it and its cache holds nothing older), and has no Watch client that
// acks but has not acked a message covering it. Clients that never ack (built
// before acknowledgements) are counted apart, as not acknowledging, and do
// not hold the barrier: nothing can tell when they applied anything.
//
// A dropped node does not hold the barrier either: it is gone from the set,
// so its clients have moved to other nodes (and started with a Resync).
// A version the catalog never wrote never completes; the caller bounds the
// wait.
package propagation

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tcs-dev/tcs/catalog/tenant"
)

// Node is one tcs lookup node of a region.
type Node struct {
	Region string `json:"-"`
	// ID names the node in its region (a host name, a pod name).
	ID string `json:"node"`
	// Addr is where it serves gRPC, host:port.
	Addr string `json:"addr,omitempty"`
}

func (n Node) String() string { return n.Region + "/" + n.ID }

// NodeStatus is what a node reports of one tenant at one version (tcs/lookup
// TenantStatus; see TenantStatusResponse in proto/tcs/admin/v1/admin.proto).
type NodeStatus struct {
	ReplicaVersion int64        `json:"replica_version"`
	CachedVersion  int64        `json:"cached_version"`
	CachedOther    bool         `json:"cached_other,omitempty"`
	FeedVersion    int64        `json:"feed_version"`
	FeedUp         bool         `json:"feed_up"`
	Served         bool         `json:"served"`
	Clients        ClientCounts `json:"clients"`
}

// ClientCounts counts Watch clients by how far they have acknowledged.
type ClientCounts struct {
	Acknowledged int `json:"acknowledged"`
	Lagging      int `json:"lagging"`
	NotAcking    int `json:"not_acking"`
}

func (c *ClientCounts) add(o ClientCounts) {
	c.Acknowledged += o.Acknowledged
	c.Lagging += o.Lagging
	c.NotAcking += o.NotAcking
}

// Dropped is a node the registry dropped from the live set: its heartbeat
// is older than the registry's bound.
type Dropped struct {
	Node
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

// Registry lists the nodes of every region: those alive, and those dropped
// recently (for the report).
type Registry interface {
	Nodes(ctx context.Context) (live []Node, dropped []Dropped, err error)
}

// Prober asks one node how far tenantID has reached version.
type Prober interface {
	Probe(ctx context.Context, n Node, tenantID string, version int64) (NodeStatus, error)
}

// ProbeFunc is a Prober.
type ProbeFunc func(ctx context.Context, n Node, tenantID string, version int64) (NodeStatus, error)

// Probe calls f.
func (f ProbeFunc) Probe(ctx context.Context, n Node, tenantID string, version int64) (NodeStatus, error) {
	return f(ctx, n, tenantID, version)
}

// Status is how far a tenant's change has reached, everywhere.
type Status struct {
	TenantID string         `json:"tenant_id"`
	Version  int64          `json:"version"`
	Done     bool           `json:"done"`
	Regions  []RegionStatus `json:"regions"`
}

// RegionStatus is how far a change has reached in one region.
type RegionStatus struct {
	Region string `json:"region"`
	Done   bool   `json:"done"`
	// ReplicaVersion is the lowest replica version the region's nodes
	// reported (they read one replica; they may see it at different
	// moments), 0 if none answered.
	ReplicaVersion int64 `json:"replica_version"`
	// Nodes are the live nodes, by id.
	Nodes []NodeReport `json:"nodes"`
	// Clients adds up the nodes' Watch clients.
	Clients ClientCounts `json:"clients"`
	// Dropped are nodes dropped from the live set recently.
	Dropped []Dropped `json:"dropped,omitempty"`
	// Problem says why a region with no node report is not done.
	Problem string `json:"problem,omitempty"`
}

// NodeReport is one live node's answer.
type NodeReport struct {
	Node
	NodeStatus
	// Done: the node answered, serves the version and has no lagging
	// client.
	Done bool `json:"done"`
	// Error is why the node could not be asked.
	Error string `json:"error,omitempty"`
}

// Lagging lists who has not reached the version, one line each, such as
// "eu-west-1/node-2: cache holds version 3" or "ap-southeast-2: no live
// node"; empty when done.
func (s Status) Lagging() []string {
	var out []string
	for _, r := range s.Regions {
		if r.Problem != "" {
			out = append(out, r.Region+": "+r.Problem)
		}
		for _, n := range r.Nodes {
			if n.Done {
				continue
			}
			var why []string
			switch {
			case n.Error != "":
				why = append(why, "not answering: "+n.Error)
			default:
				if n.ReplicaVersion < s.Version {
					why = append(why, fmt.Sprintf("replica at version %d", n.ReplicaVersion))
				}
				if n.CachedVersion != 0 && n.CachedVersion < s.Version {
					why = append(why, fmt.Sprintf("cache holds version %d", n.CachedVersion))
				}
				if n.CachedOther {
					why = append(why, "cache holds a hostname for another tenant")
				}
				if !n.FeedUp {
					why = append(why, "invalidation feed down")
				}
				if n.Clients.Lagging > 0 {
					why = append(why, fmt.Sprintf("%d Watch client(s) not acknowledged", n.Clients.Lagging))
				}
			}
			out = append(out, n.Node.String()+": "+strings.Join(why, ", "))
		}
	}
	return out
}

// Checker asks every live node of every region how far a change has reached.
type Checker struct {
	// Regions are the regions a change must reach; a region with no live
	// node is not done. Empty: the regions the registry lists.
	Regions []string
	// Registry lists the nodes. Required.
	Registry Registry
	// Prober asks them. Required.
	Prober Prober
	// ProbeTimeout bounds each node's answer. Default DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// MaxPoll is the longest pause between two checks of Wait, which starts
	// at MinPoll and doubles, and starts again from MinPoll when a check
	// finds the change further on. Defaults DefaultMinPoll, DefaultMaxPoll.
	MinPoll, MaxPoll time.Duration
}

// Defaults of a Checker.
const (
	DefaultProbeTimeout = 2 * time.Second
	DefaultMinPoll      = 5 * time.Millisecond
	DefaultMaxPoll      = 50 * time.Millisecond
)

// CheckArgs checks a tenant id and version as Check takes them: an Invalid
// *tenant.Error naming the field otherwise.
func CheckArgs(tenantID string, version int64) error {
	if err := tenant.ValidateID(tenantID); err != nil {
		return err
	}
	if version < 1 {
		return &tenant.Error{Code: tenant.Invalid, Message: "invalid version", Fields: []tenant.FieldError{{
			Field: "version", Reason: "must be at least 1 (the version a catalog write returned, its ETag)"}}}
	}
	return nil
}

// Check asks every live node once.
func (c *Checker) Check(ctx context.Context, tenantID string, version int64) (Status, error) {
	if err := CheckArgs(tenantID, version); err != nil {
		return Status{}, err
	}
	live, dropped, err := c.Registry.Nodes(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("list tcs nodes: %w", err)
	}
	reports := make([]NodeReport, len(live))
	timeout := c.ProbeTimeout
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	var wg sync.WaitGroup
	for i, n := range live {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := c.Prober.Probe(pctx, n, tenantID, version)
			r := NodeReport{Node: n, NodeStatus: st}
			if err != nil {
				r.NodeStatus, r.Error = NodeStatus{}, err.Error()
			}
			r.Done = err == nil && st.Served && st.Clients.Lagging == 0
			reports[i] = r
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}

	regions := slices.Clone(c.Regions)
	byRegion := map[string]*RegionStatus{}
	for _, r := range regions {
		byRegion[r] = &RegionStatus{Region: r}
	}
	region := func(name string) *RegionStatus {
		r, ok := byRegion[name]
		if !ok && len(c.Regions) == 0 {
			r = &RegionStatus{Region: name}
			byRegion[name] = r
			regions = append(regions, name)
		}
		return r
	}
	for _, rep := range reports {
		r := region(rep.Region)
		if r == nil {
			continue // a node of a region the change need not reach
		}
		r.Nodes = append(r.Nodes, rep)
	}
	for _, d := range dropped {
		if r := region(d.Region); r != nil {
			r.Dropped = append(r.Dropped, d)
		}
	}
	sort.Strings(regions)
	st := Status{TenantID: tenantID, Version: version, Done: true}
	for _, name := range regions {
		r := byRegion[name]
		sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].ID < r.Nodes[j].ID })
		sort.Slice(r.Dropped, func(i, j int) bool { return r.Dropped[i].ID < r.Dropped[j].ID })
		r.Done = len(r.Nodes) > 0
		if !r.Done {
			r.Problem = "no live node"
		}
		for _, n := range r.Nodes {
			r.Done = r.Done && n.Done
			r.Clients.add(n.Clients)
			if n.Error == "" && (r.ReplicaVersion == 0 || n.ReplicaVersion < r.ReplicaVersion) {
				r.ReplicaVersion = n.ReplicaVersion
			}
		}
		if r.Nodes == nil {
			r.Nodes = []NodeReport{}
		}
		st.Done = st.Done && r.Done
		st.Regions = append(st.Regions, *r)
	}
	if len(st.Regions) == 0 {
		st.Done = false
		st.Regions = []RegionStatus{}
	}
	return st, nil
}

// Wait checks until the change has reached everywhere (Status.Done) or ctx
// ends, pausing between checks from MinPoll, doubling up to MaxPoll, and
// back to MinPoll after a check that found the change further on (more
// nodes serving it, more clients acknowledging it). It
// returns the last status: done with a nil error, or not done with
// ctx.Err() (and the status of the last check that completed, which names
// who lags). An invalid tenant id or version, or a registry that fails,
// ends it at once with that error.
func (c *Checker) Wait(ctx context.Context, tenantID string, version int64) (Status, error) {
	pause, maxPause := c.MinPoll, c.MaxPoll
	if pause <= 0 {
		pause = DefaultMinPoll
	}
	if maxPause <= 0 {
		maxPause = DefaultMaxPoll
	}
	minPause := pause
	var last Status
	moved := -1
	for {
		st, err := c.Check(ctx, tenantID, version)
		if err != nil {
			if ctx.Err() != nil && last.TenantID != "" {
				return last, ctx.Err()
			}
			return st, err
		}
		last = st
		if st.Done {
			return st, nil
		}
		// A change on its way (a node that began serving it, clients
		// that acked it; a node that found clients lagging has just asked
		// them to ack at once) is checked again soon: back to MinPoll.
		if p := st.progress(); p > moved {
			if moved >= 0 {
				pause = minPause
			}
			moved = p
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, maxPause)
	}
}

// progress counts how far st has come: nodes that serve the version and
// clients that acknowledged it.
func (st Status) progress() int {
	n := 0
	for _, r := range st.Regions {
		for _, node := range r.Nodes {
			if node.Served {
				n++
			}
		}
		n += r.Clients.Acknowledged
	}
	return n
}
