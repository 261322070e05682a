// Package lease shares a group's leases (Kinesis shards, outbox shards,
// tenants of a work pool) among the group's workers so that no two of them
// hold one at the same time, and each holds about its fair share.
//
// It has three parts:
//
//   - Store: one group's leases as one worker writes them. Every change is
//     a conditional write: a take is conditioned on the counter the taker
//     read, so two workers never both take a lease; renewals, checkpoints,
//     releases and handovers are conditioned on the owner and the token (a
//     random value set by each take), so a worker that lost a lease can
//     change nothing in it (ErrLost). Backends: internal/leasetable
//     (DynamoDB) and internal/lease/memlease (in memory, for the embedded
//     family); internal/lease/leasetest is the suite both pass.
//   - Observer: expiry as one worker sees it. A lease whose owner and
//     counter stay the same for the lease duration, by the observer's own
//     clock, has expired: no two clocks need agree.
//   - Balance: the balancing decisions, a pure function of the leases as
//     read, the observer's expiry, what this worker holds, the live workers
//     and their weights. It says which leases to adopt (the table names
//     this worker, nothing runs them), which to take (free, then expired, up
//     to this worker's share), which steal requests to make (to the worker
//     most over its share, when nothing is free) and, through Plan.Yield,
//     which requested leases to hand over (politely: not when that would
//     leave this worker short, unless the asker is shorter still; a
//     request it refuses it declines, so that the asker asks elsewhere).
//
// Fair share: with n eligible leases and live workers of weights w (1 when
// not given), a worker's share is ceil(n·w/W), W the sum of the weights.
// A worker takes free and expired leases up to its share; one still short
// asks the worker with the largest excess (leases held minus share) when
// that excess is positive, or zero while the asker is two or more short.
// The owner hands a requested lease over when it holds more than its share,
// or exactly its share while the asker is two or more short. Once nothing
// moves, every worker holds within one of n·w/W, when every worker knows
// every other: with equal weights the leases tell them enough; with
// weights give a membership list (Input.Workers).
//
// # Balance by weight
//
// With Input.Weight each lease has a weight (tcs/work: the ACTIVE tenants
// of a bucket) and the plan shares weight, not leases. Let W be the total
// weight, c a worker's capacity (Input.Weights) and C their sum: the
// worker's share is T = W·c/C, its load ℓ the weight it holds, its
// deviation ℓ − T, its band T/20, and the margin m = max(1, the smallest
// positive share/40). A worker takes free and expired leases of weight 0
// whenever it sees them, and the others while its load is below T. One
// below its share asks, when it or the worker furthest over its share is
// outside its band, that worker for leases of weight w ≤ e − d − m (e the
// giver's deviation, d the asker's: the gap between them exceeds the
// lease by the margin); the owner hands a lease over on the same
// condition, judged from its own load (Plan.YieldByWeight).
//
// The guarantee: once nothing moves (every lease held, every worker
// knowing every other and agreeing on the weights), every worker's
// deviation is within max(T/20, h + m), h the heaviest lease. So each
// worker holds within ±10% of its share whenever h + m ≤ T/10: the
// heaviest lease at most 7.5% of the smallest share, less one. With few
// tenants (shares of a few units, m = 1) the bound is h + 1: with every
// lease of weight 1 or 0, loads differ from their shares by less than 2.
//
// Hysteresis: each handover lowers Σ(ℓ − T)² by at least 2·w·m, so moves
// stop; and nothing moves while every worker is within its band, so
// weights that drift a little move nothing. A lease handed from one worker
// to another cannot come straight back: the gap between their deviations
// must first change by 2m (weights drifting, other leases moving).
//
// The callers (streamer/kinesis, streamer/publease) run the plan: they make
// the writes, start and stop their work, and count what they hold.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrLost is a conditional write that failed because the lease is no
// longer the writer's (or, for a take or a steal request, changed since it
// was read).
var ErrLost = errors.New("lease lost")

// Lease is one group's lease of one key, as stored.
type Lease struct {
	// Key names what is leased: a shard id, a tenant id.
	Key string
	// Owner is the worker holding the lease; "" when free.
	Owner string
	// Checkpoint is the group's progress in the key (its users' format);
	// "" if none.
	Checkpoint string
	// Parents are the keys this one was split or merged from, sorted.
	Parents []string
	// Counter changes with every take, renewal, checkpoint, release and
	// handover (not with a steal request).
	Counter int64
	// Pending is a worker that asked the owner for the lease.
	Pending string
	// Token is set by each take and handover; the owner's writes name it.
	// "" when free.
	Token string
	// RenewedAt is when the lease was last written by its owner (or taken),
	// by the writer's clock: for people, not for expiry.
	RenewedAt time.Time
}

// Store is one group's leases, written as one worker (the owner its
// constructor was given). Conditional writes that fail return ErrLost and
// change nothing.
type Store interface {
	// List returns every lease of the group, read consistently, in key
	// order (the store's order; by default strings.Compare).
	List(ctx context.Context) ([]Lease, error)
	// Create adds a free lease of key, unless one exists (then it does
	// nothing and returns nil).
	Create(ctx context.Context, key string, parents []string) error
	// RemoveIfCheckpoint deletes key's lease if its checkpoint is
	// checkpoint, and reports whether it did.
	RemoveIfCheckpoint(ctx context.Context, key, checkpoint string) (bool, error)
	// Take makes l (as read) this worker's, with a new token and no
	// pending request, if its counter has not changed since it was read.
	Take(ctx context.Context, l Lease) (Lease, error)
	// Renew bumps the counter of a lease this worker holds with token and
	// returns the lease as written (so that the owner sees steal requests).
	Renew(ctx context.Context, key, token string) (Lease, error)
	// Checkpoint records progress in a lease this worker holds, renewing
	// it.
	Checkpoint(ctx context.Context, key, token, checkpoint string) error
	// Finish records a last checkpoint and frees the lease in one write.
	Finish(ctx context.Context, key, token, checkpoint string) error
	// Release frees a lease this worker holds.
	Release(ctx context.Context, key, token string) error
	// HandOver gives a lease this worker holds to the worker that asked
	// for it (its Pending must be to), with a new token.
	HandOver(ctx context.Context, key, token, to string) error
	// Decline refuses the request of who for a lease this worker holds:
	// it clears Pending (if who still asks) and renews the lease, so that
	// who may ask elsewhere.
	Decline(ctx context.Context, key, token, who string) error
	// RequestSteal asks l's owner (as read) to hand l over to this worker,
	// if l's counter and owner have not changed and nobody asked before. It
	// does not change the counter: a request does not keep a dead owner's
	// lease alive.
	RequestSteal(ctx context.Context, l Lease) error
}

// NewToken returns a random lease token.
func NewToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// DefaultOwner names a worker that was given no name: host name, process id
// and a random suffix, so that two processes never share one.
func DefaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), NewToken()[:8])
}

// CheckCreate checks Create's arguments, as every backend does before it
// writes: a key, and parents that are keys, none twice (DynamoDB's string
// sets refuse both empty and repeated elements).
func CheckCreate(key string, parents []string) error {
	if key == "" {
		return errors.New("lease key is empty")
	}
	seen := map[string]bool{}
	for _, p := range parents {
		switch {
		case p == "":
			return fmt.Errorf("lease %s: a parent is empty", key)
		case seen[p]:
			return fmt.Errorf("lease %s: parent %s named twice", key, p)
		}
		seen[p] = true
	}
	return nil
}

// RenewTimeout bounds one renewal of a lease of duration d: the renewal
// interval (d/5), at least 1 s. Not the SDK's 10 s: a renewal hung in a
// table that froze would otherwise hold the next attempt until after the
// table is back.
func RenewTimeout(d time.Duration) time.Duration { return max(d/5, time.Second) }
