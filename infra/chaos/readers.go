//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
)

// Outcome of one lookup.
type Outcome string

const (
	OK       Outcome = "ok"        // a tenant (fresh or served stale)
	NotFound Outcome = "not_found" // a definite answer: no tenant owns the hostname
	Failed   Outcome = "error"     // no answer
)

// Sample is one lookup by one reader.
type Sample struct {
	Reader   string        `json:"reader"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Host     string        `json:"host"`
	Outcome  Outcome       `json:"outcome"`
	Error    string        `json:"error,omitempty"` // gRPC code or client error
	TenantID string        `json:"tenant_id,omitempty"`
	Version  int64         `json:"version,omitempty"`
	// Stale: served past its TTL because the replica (server) or every
	// region (client) failed; Age is how old the answer was.
	Stale bool          `json:"stale,omitempty"`
	Age   time.Duration `json:"age_ns,omitempty"`
	// Recent: this reader got an answer for the hostname in the previous
	// minute (see prevAnswer.answeredWithin).
	Recent bool `json:"recent,omitempty"`
	// For a failed lookup only, to tell why it failed: Detail is the
	// error's message, Prev what this reader had got for the hostname
	// before the lookup began (its last answer and how long before, and
	// how many of its lookups had failed since; "none" if it never had an
	// answer).
	Detail string `json:"detail,omitempty"`
	Prev   string `json:"prev,omitempty"`
}

// prevAnswer is a reader's last answer for a hostname, and its lookups of
// it that failed since.
type prevAnswer struct {
	s        *Sample // nil: never answered
	failures int
}

// answeredWithin reports whether the hostname got an answer (a tenant or
// NOT_FOUND, stale or not) that arrived no longer than d before now: the
// hostnames a node or a client was serving, which is what a cache can keep
// serving through a replica outage. A hostname whose every lookup failed
// (first looked up during the outage, say) has nothing to be kept, however
// often it is asked for, so its lookups do not count as "recently looked
// up".
func (p prevAnswer) answeredWithin(now time.Time, d time.Duration) bool {
	return p.s != nil && now.Sub(p.s.Start.Add(p.s.Duration)) <= d
}

// describe says what a lookup starting at now had had before (Sample.Prev).
func (p prevAnswer) describe(now time.Time) string {
	if p.s == nil {
		return fmt.Sprintf("none (%d failed lookups before)", p.failures)
	}
	a := p.s
	what := string(a.Outcome)
	if a.Outcome == OK {
		what = fmt.Sprintf("%s v%d", a.TenantID, a.Version)
	}
	if a.Stale {
		what += fmt.Sprintf(" stale (age %s)", a.Age.Round(time.Millisecond))
	}
	return fmt.Sprintf("%s, answered %s before; %d failed since", what, now.Sub(a.Start.Add(a.Duration)).Round(time.Millisecond), p.failures)
}

// Answered reports whether the lookup got an answer.
func (s Sample) Answered() bool { return s.Outcome != Failed }

// lookupFunc looks a hostname up and fills the sample's outcome.
type lookupFunc func(ctx context.Context, host string, s *Sample)

// Reader looks up hostnames at a steady rate and records every answer.
type Reader struct {
	Name    string
	Kind    string // "region" (gRPC straight to one tcs node) or "client" (tcs/client)
	Region  string
	lookup  lookupFunc
	close   func() error
	rate    float64
	timeout time.Duration
	hosts   func() []string

	mu      sync.Mutex
	samples []Sample
	prev    map[string]prevAnswer
}

// RecentWindow is how recently a hostname must have been looked up for a
// lookup of it to count as one of a recently looked-up hostname.
const RecentWindow = time.Minute

// DialProbe returns a connection for the suite's own calls to a tcs node
// (its region readers and convergence checks). It reconnects at most half a
// second after a failure: gRPC's default backoff, which grows to seconds
// after a node has been down for a while, would make a restarted node look
// unavailable, and unconverged, for as long after it serves again, and the
// suite measures the node, not its own reconnection.
func DialProbe(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
}

// NewRegionReader reads one region's tcs node over gRPC.
func NewRegionReader(region, addr string, rate float64, timeout time.Duration, hosts func() []string) (*Reader, error) {
	conn, err := DialProbe(addr)
	if err != nil {
		return nil, err
	}
	c := tcsv1.NewTenantContextServiceClient(conn)
	r := &Reader{Name: "region " + region, Kind: "region", Region: region, rate: rate, timeout: timeout, hosts: hosts, close: conn.Close}
	r.lookup = func(ctx context.Context, host string, s *Sample) {
		res, err := c.Lookup(ctx, &tcsv1.LookupRequest{Hostname: host})
		switch {
		case err == nil:
			s.Outcome = OK
			s.TenantID, s.Version = res.GetTenant().GetId(), res.GetTenant().GetVersion()
			s.Stale, s.Age = res.GetStale(), res.GetAge().AsDuration()
		case status.Code(err) == codes.NotFound:
			s.Outcome = NotFound
		default:
			s.Outcome, s.Error, s.Detail = Failed, status.Code(err).String(), status.Convert(err).Message()
		}
	}
	return r, nil
}

// NewClientReader reads through the client library, with the given region
// first and the others after it, as a compute node in that region would.
func NewClientReader(ctx context.Context, region string, addrs []string, ttl time.Duration, rate float64, timeout time.Duration, hosts func() []string) (*Reader, error) {
	c, err := client.New(ctx, client.WithRegions(addrs...), client.WithTTL(ttl))
	if err != nil {
		return nil, err
	}
	r := &Reader{Name: "client " + region, Kind: "client", Region: region, rate: rate, timeout: timeout, hosts: hosts, close: c.Close}
	r.lookup = func(ctx context.Context, host string, s *Sample) {
		t, meta, err := c.LookupMeta(ctx, host)
		switch {
		case err == nil:
			s.Outcome = OK
			s.TenantID, s.Version = t.ID, t.Version
			s.Stale, s.Age = meta.Stale, meta.Age
		case errors.Is(err, client.ErrNotFound):
			s.Outcome = NotFound
		case errors.Is(err, client.ErrUnavailable):
			s.Outcome, s.Error, s.Detail = Failed, "unavailable", err.Error()
		case errors.Is(err, context.DeadlineExceeded):
			s.Outcome, s.Error, s.Detail = Failed, "timeout", err.Error()
		default:
			s.Outcome, s.Error, s.Detail = Failed, err.Error(), err.Error()
		}
	}
	return r, nil
}

// Run looks hostnames up until ctx ends: one lookup per 1/rate, each in its
// own goroutine (a slow answer does not slow the rate), at most 64 at once.
func (r *Reader) Run(ctx context.Context) {
	r.prev = map[string]prevAnswer{}
	tick := time.NewTicker(time.Duration(float64(time.Second) / r.rate))
	defer tick.Stop()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hosts := r.hosts()
		if len(hosts) == 0 {
			continue
		}
		host := hosts[rand.IntN(len(hosts))]
		select {
		case sem <- struct{}{}:
		default:
			continue // 64 lookups hang: the ones in flight will count as failures
		}
		now := time.Now()
		r.mu.Lock()
		before := r.prev[host]
		r.mu.Unlock()
		wg.Go(func() {
			defer func() { <-sem }()
			s := Sample{Reader: r.Name, Start: now, Host: host, Recent: before.answeredWithin(now, RecentWindow)}
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
			r.lookup(lctx, host, &s)
			cancel()
			s.Duration = time.Since(now)
			if !s.Answered() {
				s.Prev = before.describe(now)
			}
			r.mu.Lock()
			r.samples = append(r.samples, s)
			p := r.prev[host]
			if s.Answered() {
				if p.s == nil || !p.s.Start.After(s.Start) {
					p = prevAnswer{s: &s}
				}
			} else {
				p.failures++
			}
			r.prev[host] = p
			r.mu.Unlock()
		})
	}
}

// Samples returns every lookup so far.
func (r *Reader) Samples() []Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Sample(nil), r.samples...)
}

// Close closes the reader's connection or client.
func (r *Reader) Close() error { return r.close() }
