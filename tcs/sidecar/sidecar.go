// Package sidecar serves tenant lookups from one tcs/client.Client to
// programs on the same host that do not link the Go client: an HTTP/JSON
// API (GET /v1/lookup/{hostname}, POST /v1/lookup:batch) that answers with
// the tenant in TCS's one JSON form (the catalog REST API's document, byte
// for byte: see tcsv1.MarshalTenantJSON), and the lookup gRPC API
// (tcs.v1.TenantContextService) answered from the same client. cmd/tcs-sidecar
// wires it; the package is separate so that it can be tested and embedded.
//
// Every answer comes from the client, so it carries the client's cache,
// Watch invalidations, hedging, failover, stale-if-error and monotonic
// reads. The JSON of a tenant is encoded once per document the client
// returns (the client hands out one shared *tenant.Tenant per cached
// version) and kept in a small table keyed by that pointer, so a hit
// encodes nothing.
//
// HTTP answers:
//
//   - 200 with the tenant; ETag: "<version>", Age: whole seconds since a
//     region read it from its replica, TCS-Region: the region that read it,
//     TCS-Stale: true when every region failed and an expired answer (up to
//     the client's max-stale) was served.
//   - application/problem+json (RFC 9457, the REST API's shape) otherwise:
//     400 malformed_request for a hostname that cannot be normalised (the
//     detail names it and says why, errors[0].field is "hostname"), a bad
//     query or a bad batch body (the field named), 404 not_found for a
//     hostname no live tenant owns (TCS-Stale and Age when that answer is
//     a stale one), 404 route_not_found, 405 method_not_allowed with Allow,
//     413 request_too_large for a batch body over 64 KiB, 415 for a batch
//     body that is not application/json, 503 unavailable (Retry-After: 1)
//     when no region answered and nothing was cached within max-stale, or
//     version_not_reached for read-your-writes, 500 internal (logged, never
//     shown); and from Serve, for a request it cannot read, 431
//     request_header_too_large (request line and headers over 16 KiB), 408
//     request_timeout or 400 malformed_request (also a target with a bad
//     escape, on ServeFastHTTP).
//
// Serving: Serve serves ServeFastHTTP with fasthttp (a hit from another
// process took 30 µs at the median where net/http took 76: see fast.go and
// cmd/tcs-sidecar's BenchmarkSidecar); ServeHTTP is the same API as an
// http.Handler, for tests, embedding and tracing (otelhttp), which Adapt
// serves on fasthttp.
//
// Read-your-writes: ?min_version=V (and optionally &tenant_id=ID) asks for
// the tenant at version V or newer, as client.LookupAtLeast does.
package sidecar

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/tcs-dev/tcs/catalog/tenant"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/client"
)

// Lookuper is what the sidecar uses of a *client.Client.
type Lookuper interface {
	LookupMeta(ctx context.Context, hostname string) (*tenant.Tenant, client.Meta, error)
	LookupAtLeast(ctx context.Context, hostname string, minVersion int64) (*tenant.Tenant, error)
	LookupTenantAtLeast(ctx context.Context, hostname, tenantID string, minVersion int64) (*tenant.Tenant, error)
	BatchLookup(ctx context.Context, hostnames []string) ([]client.Result, error)
	// Watching reports whether the client's invalidation stream is up.
	Watching() bool
}

var _ Lookuper = (*client.Client)(nil)

// MaxBatch is the most hostnames one batch lookup takes (as the gRPC
// BatchLookup does).
const MaxBatch = 100

// MaxBatchBody bounds the body of POST /v1/lookup:batch.
const MaxBatchBody = 64 << 10

// DefaultPollInterval is how often Run polls the client's Watch state.
const DefaultPollInterval = 100 * time.Millisecond

// Config configures New.
type Config struct {
	// Client answers every lookup. Required.
	Client Lookuper
	// Logger gets what goes wrong; nil discards.
	Logger *slog.Logger
	// Registerer gets the sidecar's metrics (tcs_sidecar_*); nil registers
	// none.
	Registerer prometheus.Registerer
	// PollInterval is how often Run polls the client's Watch state; zero
	// means DefaultPollInterval.
	PollInterval time.Duration
	// Fallback serves the HTTP paths outside /v1/ (cmd/tcs-sidecar: /metrics,
	// /healthz, /readyz); nil answers them 404.
	Fallback http.Handler
}

// Server is the sidecar: an http.Handler for the HTTP/JSON API and a
// tcs.v1.TenantContextService for gRPC, both answered from one client.
type Server struct {
	lk       Lookuper
	log      *slog.Logger
	fallback http.Handler
	poll     time.Duration
	m        *metrics
	enc      encodings
	names    hostnames
	started  atomic.Bool // the client has been watching at least once
	drain    atomic.Bool
	// lastRegion is the TCS-Region header value last sent.
	lastRegion atomic.Pointer[headerValue]
	health     []func(serving bool)
	mu         sync.Mutex
	// adapted is ServeHTTP on fasthttp, for what ServeFastHTTP does not
	// answer itself.
	adapted fasthttp.RequestHandler
}

// New returns a Server answering from cfg.Client.
func New(cfg Config) *Server {
	if cfg.Client == nil {
		panic("sidecar: Config.Client is nil")
	}
	s := &Server{lk: cfg.Client, log: cfg.Logger, poll: cfg.PollInterval, fallback: cfg.Fallback}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.poll <= 0 {
		s.poll = DefaultPollInterval
	}
	s.m = newMetrics(cfg.Registerer, s)
	s.enc.seed = maphash.MakeSeed()
	s.names.seed = maphash.MakeSeed()
	s.adapted = s.Adapt(s)
	return s
}

// Ready reports whether the sidecar should get traffic: nil once the
// client's Watch stream has been up (its first Resync arrived: until then
// every lookup is a miss the client must ask a region for) and until Drain.
// A Watch stream lost later does not make it unready: the client still
// answers, from its cache with a shortened TTL, from the regions, or stale;
// an unready sidecar would take its whole pod out of service.
func (s *Server) Ready() error {
	switch {
	case s.drain.Load():
		return errors.New("draining: stopping")
	case !s.started.Load() && !s.lk.Watching():
		return errors.New("the tcs client's invalidation stream is not up yet (no region answered Watch)")
	}
	return nil
}

// Drain makes Ready fail and gRPC health report NOT_SERVING from now on:
// what a stopping sidecar does before it stops accepting.
func (s *Server) Drain() {
	s.drain.Store(true)
	s.setHealth()
}

// Run polls the client's Watch state until ctx ends, for Ready, gRPC
// health and the tcs_sidecar_watching metric. It returns nil.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		if s.lk.Watching() && !s.started.Swap(true) {
			s.log.Info("tcs client watching: ready")
		}
		s.setHealth()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// onHealth adds a function told whether the sidecar is serving whenever
// Run or Drain looks.
func (s *Server) onHealth(f func(serving bool)) {
	s.mu.Lock()
	s.health = append(s.health, f)
	s.mu.Unlock()
	f(s.Ready() == nil)
}

func (s *Server) setHealth() {
	serving := s.Ready() == nil
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.health {
		f(serving)
	}
}

// encoded is a tenant document as the sidecar sends it, made once per
// document the client returns.
type encoded struct {
	t    *tenant.Tenant // the client's shared document: identity is the key
	json []byte         // tcsv1.MarshalTenantJSON
	etag headerValue    // `"<version>"`
	pb   *tcsv1.Tenant  // shared by every gRPC answer (read-only)
}

// encSlots is the size of the table of encoded documents: enough for the
// tenants one compute service looks up within a TTL; one that is pushed
// out is encoded again on its next lookup.
const encSlots = 1 << 12

// encodings keeps the encoded form of the documents most recently
// answered, direct-mapped by the document's pointer: no lock, no
// allocation on a hit.
type encodings struct {
	seed  maphash.Seed
	slots [encSlots]atomic.Pointer[encoded]
}

// of returns t encoded, from the table when t (this very document) is there.
func (e *encodings) of(t *tenant.Tenant) (*encoded, error) {
	slot := &e.slots[maphash.Comparable(e.seed, t)&(encSlots-1)]
	if x := slot.Load(); x != nil && x.t == t {
		return x, nil
	}
	b, err := tcsv1.MarshalTenantJSON(t)
	if err != nil {
		return nil, err
	}
	x := &encoded{t: t, json: b, etag: newHeaderValue(`"` + strconv.FormatInt(t.Version, 10) + `"`), pb: tcsv1.TenantToProto(t)}
	slot.Store(x)
	return x, nil
}

// nameSlots is the size of the table of hostnames: as encSlots, the
// hostnames one compute service looks up within a TTL.
const nameSlots = 1 << 12

// maxNameLen bounds the hostnames kept in the table: a hostname is at most
// 253 bytes; a longer path is refused anyway, and need not push one out.
const maxNameLen = 253

// hostnames keeps, as strings, the hostnames most recently asked for on
// fasthttp (ServeFastHTTP), direct-mapped by their bytes: the request's
// bytes are valid only until the handler returns, and the client is given
// a string it may keep, allocated once per hostname rather than once per
// request. No lock; no allocation when the hostname is there.
type hostnames struct {
	seed  maphash.Seed
	slots [nameSlots]atomic.Pointer[string]
}

// of returns b as a string, from the table when it is there.
func (n *hostnames) of(b []byte) string {
	if len(b) > maxNameLen {
		return string(b)
	}
	slot := &n.slots[maphash.Bytes(n.seed, b)&(nameSlots-1)]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	name := string(b)
	slot.Store(&name)
	return name
}

// ageHeader holds the Age header values of the first hours, so that a hit
// formats nothing.
var ageHeader = func() []headerValue {
	a := make([]headerValue, 3600)
	for i := range a {
		a[i] = newHeaderValue(strconv.Itoa(i))
	}
	return a
}()

func ageValue(d time.Duration) *headerValue {
	sec := int64(max(d, 0) / time.Second)
	if sec < int64(len(ageHeader)) {
		return &ageHeader[sec]
	}
	v := newHeaderValue(strconv.FormatInt(sec, 10))
	return &v
}
