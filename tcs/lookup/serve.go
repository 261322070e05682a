package lookup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/tcs-dev/tcs/internal/auth"
)

// ServeOptions configure Serve. The zero value serves plaintext with the
// defaults described.
type ServeOptions struct {
	// TLS, if set, serves TLS with this configuration; for mutual TLS set
	// its ClientAuth and ClientCAs.
	TLS *tls.Config
	// Auth, if set, authenticates every call (bearer token or client
	// certificate) and enforces Policy: Lookup, BatchLookup and Watch need
	// the lookup role, ReplicaAdmin replica-scan; health (and reflection,
	// when on) stays open. The caller's auth.Identity is in the handlers'
	// context. Nil: no authentication, and ReplicaAdmin refuses every call.
	Auth *auth.Authenticator
	// Reflection serves gRPC server reflection (grpcurl without .proto
	// files). Off by default: it tells anyone who connects what the server
	// offers.
	Reflection bool
	// ShutdownTimeout is how long a graceful stop may wait for calls in
	// flight before they are cut off. Default 10 s.
	ShutdownTimeout time.Duration
	// Keepalive is the server's keepalive behaviour. Each zero field takes
	// its default: ping an idle client after 30 s (Time), and drop it 10 s
	// after an unanswered ping (Timeout); close a connection gracefully
	// (GOAWAY) after DefaultMaxConnectionAge, so that clients spread over
	// new servers and no connection holds its streams for ever, and cut
	// off what still runs on it DefaultMaxConnectionAgeGrace later (Watch
	// streams included: clients reconnect). A negative MaxConnectionAge or
	// MaxConnectionAgeGrace means never.
	Keepalive keepalive.ServerParameters
	// KeepalivePolicy is what the server tolerates from clients' pings.
	// Zero means: pings at most every 10 s, allowed without active calls
	// (Watch clients hold long idle streams); a client that pings more
	// often (a ping flood) is sent GOAWAY and disconnected.
	KeepalivePolicy keepalive.EnforcementPolicy
	// MaxConcurrentStreams caps the calls (HTTP/2 streams) open at once on
	// one connection; a client opening more waits for one to end. Zero
	// means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32
	// StreamWorkers is the number of goroutines kept to run calls
	// (grpc.NumStreamWorkers): a call run on a kept goroutine does not
	// start one and grow its stack, which costs a unary call about a tenth
	// of its server CPU (BenchmarkLookupVsBare profile). Zero means
	// GOMAXPROCS; negative means a new goroutine per call, grpc-go's
	// default.
	StreamWorkers int
	// Services are registered on the server beside the lookup service
	// (tcs/work's WorkService: its methods need the lookup role).
	Services []func(grpc.ServiceRegistrar)
	// ServerOptions are added after the server's own, so they override;
	// their interceptors run outside authentication's (a refused call goes
	// through them too).
	ServerOptions []grpc.ServerOption
}

// Defaults of ServeOptions.
const (
	DefaultMaxConcurrentStreams  = 1_000
	DefaultMaxConnectionAge      = time.Hour
	DefaultMaxConnectionAgeGrace = time.Minute
)

// maxRecvMsgSize bounds a request: a BatchLookup of MaxBatch hostnames of
// MaxHostnameInput bytes, with room to spare. Anything bigger is malformed.
const maxRecvMsgSize = 256 << 10

// Serve serves the TenantContextService on lis, with grpc.health.v1
// (SERVING while serving, NOT_SERVING once shutting down, for the whole
// server and for tcs.v1.TenantContextService), server reflection if
// opts.Reflection, authentication if opts.Auth, and
// runs Run alongside (so Run must not be called as well). When ctx ends it
// reports NOT_SERVING, ends Watch streams, stops gracefully, and cuts off
// what is still in flight after opts.ShutdownTimeout. It returns nil after
// a shutdown caused by ctx, or the error that stopped it.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ServeOptions) error {
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	opts.Keepalive = keepaliveDefaults(opts.Keepalive)
	if opts.MaxConcurrentStreams == 0 {
		opts.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if opts.KeepalivePolicy == (keepalive.EnforcementPolicy{}) {
		opts.KeepalivePolicy = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}
	}
	sopts := []grpc.ServerOption{
		grpc.KeepaliveParams(opts.Keepalive),
		grpc.KeepaliveEnforcementPolicy(opts.KeepalivePolicy),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxConcurrentStreams(opts.MaxConcurrentStreams),
	}
	if opts.TLS != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	if opts.StreamWorkers == 0 {
		opts.StreamWorkers = runtime.GOMAXPROCS(0)
	}
	if opts.StreamWorkers > 0 {
		sopts = append(sopts, grpc.NumStreamWorkers(uint32(opts.StreamWorkers)))
	}
	sopts = append(sopts, opts.ServerOptions...)
	if opts.Auth != nil {
		// After opts.ServerOptions: their interceptors (request ids, logs)
		// run around authentication, so that refused calls have them too.
		sopts = append(sopts, opts.Auth.ServerOptions(Policy(opts.Reflection))...)
	}
	gs := grpc.NewServer(sopts...)
	s.Register(gs)
	for _, register := range opts.Services {
		register(gs)
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	if opts.Reflection {
		reflection.Register(gs)
	}
	s.publishHealth(hs)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.Run(gctx); err != nil {
			return fmt.Errorf("lookup run: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		err := gs.Serve(lis)
		if gctx.Err() == nil {
			s.serveEnded.Store(true)
		}
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("lookup serve %s: %w", lis.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.log.Info("lookup server shutting down", "addr", lis.Addr().String())
		s.shuttingDown.Store(true)
		s.ready.Set(0)
		hs.Shutdown() // NOT_SERVING, for load balancers, before anything stops
		s.endWatches()
		stopped := make(chan struct{})
		go func() {
			gs.GracefulStop()
			close(stopped)
		}()
		t := time.NewTimer(opts.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			s.log.Warn("graceful stop timed out; closing remaining calls", "timeout", opts.ShutdownTimeout)
			gs.Stop()
			<-stopped
		}
		return nil
	})
	return g.Wait()
}

// keepaliveDefaults fills in the zero fields of k (see
// ServeOptions.Keepalive); grpc-go reads a zero age as never.
func keepaliveDefaults(k keepalive.ServerParameters) keepalive.ServerParameters {
	if k.Time == 0 {
		k.Time = 30 * time.Second
	}
	if k.Timeout == 0 {
		k.Timeout = 10 * time.Second
	}
	switch {
	case k.MaxConnectionAge == 0:
		k.MaxConnectionAge = DefaultMaxConnectionAge
	case k.MaxConnectionAge < 0:
		k.MaxConnectionAge = 0
	}
	switch {
	case k.MaxConnectionAgeGrace == 0:
		k.MaxConnectionAgeGrace = DefaultMaxConnectionAgeGrace
	case k.MaxConnectionAgeGrace < 0:
		k.MaxConnectionAgeGrace = 0
	}
	return k
}
