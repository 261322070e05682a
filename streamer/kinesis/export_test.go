package kinesis

import (
	"context"
	"sync"
)

// WithCrash returns a context for Consume and a crash func: calling crash
// stops that Consume as if its process had died at that instant. Its shard
// loops stop, their handlers' contexts end, and nothing more is written to
// the lease table: no checkpoint (not even of a batch the handler has just
// accepted), no handover, no release. Its leases stay held until they
// expire, as a dead worker's would.
func WithCrash(ctx context.Context) (_ context.Context, crash func()) {
	ch := make(chan struct{})
	var once sync.Once
	return context.WithValue(ctx, crashKey{}, (<-chan struct{})(ch)), func() { once.Do(func() { close(ch) }) }
}

// Pack and Unpack are pack and unpack, for the packing tests.
var (
	Pack   = pack
	Unpack = unpack
)
