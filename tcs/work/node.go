package work

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/tcs-dev/tcs/tcs"
)

// NodeConfig configures what a tcs node runs for the work pools.
type NodeConfig struct {
	// Replica is the node's region's replica (a tcs.Scanner).
	Replica tcs.Replica
	// Leases opens the pools' lease groups: on the embedded family a
	// memlease.Table shared by every node of the process, on AWS the
	// <prefix>-work-leases table of the home region.
	Leases Leases
	// LeaseDuration is the bucket leases' duration. Default
	// DefaultLeaseDuration.
	LeaseDuration time.Duration
	// Logger and Registerer: see Config.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Node is a tcs node's part of the work pools: the Index of its replica and
// the WorkService over it. Wire it with Feed (around the lookup server's
// feed), Register (on the lookup server's gRPC server) and Run.
type Node struct {
	index *Index
	svc   *Service
}

// NewNode returns a Node.
func NewNode(cfg NodeConfig) (*Node, error) {
	x, err := NewIndex(IndexConfig{Replica: cfg.Replica, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	svc, err := New(Config{Leases: cfg.Leases, Index: x, LeaseDuration: cfg.LeaseDuration, Logger: cfg.Logger, Registerer: cfg.Registerer})
	if err != nil {
		return nil, err
	}
	return &Node{index: x, svc: svc}, nil
}

// Feed returns f with the node's index watching it (nil if f is nil: the
// index then learns of changes from its rescans only).
func (n *Node) Feed(f tcs.Feed) tcs.Feed {
	if f == nil {
		return nil
	}
	return n.index.Feed(f)
}

// Register registers the WorkService on gs.
func (n *Node) Register(gs grpc.ServiceRegistrar) { n.svc.Register(gs) }

// Run keeps the index up to date until ctx ends.
func (n *Node) Run(ctx context.Context) error { return n.index.Run(ctx) }

// Index returns the node's index.
func (n *Node) Index() *Index { return n.index }
