// Command tcs-sidecar runs next to a compute service and answers its tenant
// lookups on localhost, for programs that do not link the Go client
// (tcs/client): it holds one client (cache, Watch invalidations, hedging,
// failover, stale-if-error) on the regions of --regions and serves
//
//   - HTTP/JSON on --http-addr (127.0.0.1:7070) and, with --unix-socket, on a
//     Unix socket: GET /v1/lookup/{hostname} answers the tenant in the same
//     JSON as the catalog REST API (ETag, Age, TCS-Region, TCS-Stale
//     headers; read-your-writes with ?min_version=V[&tenant_id=ID]), POST
//     /v1/lookup:batch {"hostnames":[…]} answers up to 100, errors are
//     application/problem+json; /metrics, /healthz and /readyz beside them
//     (served with fasthttp: sidecar.Serve; with --busy-poll its
//     connections spin for the next request of a caller that sends them
//     back to back: internal/busypoll);
//   - gRPC on --grpc-addr (127.0.0.1:7071): tcs.v1.TenantContextService
//     Lookup and BatchLookup from the same client (Watch is not served: the
//     sidecar is the cache), gRPC health, and with --reflection server
//     reflection.
//
// With no flags it works beside `make run`: the three regions on
// 127.0.0.1:9001-9003 and the development lookup token (TCS_LOOKUP_TOKEN
// sets another; the development token is used only when every region is on
// loopback). Its API has no authentication, so it listens on loopback only
// unless --insecure-i-know.
//
// `tcs-sidecar --probe /readyz` (same --http-addr or --unix-socket) asks a
// running sidecar instead: an exec probe for Kubernetes, whose kubelet
// cannot reach a loopback listener.
//
// Ready (/readyz, gRPC health SERVING) once the client's Watch stream has
// been up; a stream lost later does not make it unready (the client keeps
// answering). On SIGTERM it reports unready at once, keeps answering for
// --drain-delay, then stops accepting and finishes what is in flight.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"

	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/busypoll"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/client/clientotel"
	"github.com/tcs-dev/tcs/tcs/client/clientprom"
	"github.com/tcs-dev/tcs/tcs/sidecar"
)

func main() { cmdutil.Main("tcs-sidecar", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

// bound are the addresses a started sidecar listens on ("" for none).
type bound struct {
	HTTP, Unix, GRPC string
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- bound) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Fprintln(stdout, buildinfo.Get().String("tcs-sidecar"))
		return nil
	}
	if cfg.Probe != "" {
		return probe(ctx, cfg, stdout)
	}
	log, err := cfg.Obs.Logger(stderr)
	if err != nil {
		return err
	}
	tracing, stopTracing, err := cmdutil.StartTracing(ctx, "tcs-sidecar", getenv, stdout, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	for _, b := range []struct{ flag, addr string }{{"--http-addr", cfg.HTTPAddr}, {"--grpc-addr", cfg.GRPCAddr}} {
		if b.addr != "" && !auth.IsLoopback(b.addr) {
			log.Warn("INSECURE: serving a non-loopback address without authentication or TLS because of --insecure-i-know", "flag", b.flag, "addr", b.addr)
		}
	}
	reg, registerer := cmdutil.Registry("sidecar", "")
	opts, err := cfg.clientOptions()
	if err != nil {
		return err
	}
	cm := clientprom.New() // tcs_client_*
	registerer.MustRegister(cm)
	// Every lookup here is a loopback round trip of tens of µs: a precise
	// clock costs a hit 30 ns, the coarse clock's ticker a thousand wake-ups
	// a second and, measured, about 4 µs of an idle sidecar's median.
	opts = append(opts, client.WithLogger(log), client.WithMetrics(cm.Hooks()), client.WithPreciseClock())
	if tracing.Enabled() {
		// A lookup the cache cannot answer is a client span, the child of
		// the HTTP or gRPC request's, and the tcs node's server span its child.
		opts = append(opts, clientotel.WithTracing(tracing.Provider()))
	}
	cl, err := client.New(ctx, opts...)
	if err != nil {
		return err
	}
	defer cl.Close()

	var srv *sidecar.Server
	obs := cmdutil.ObsHandler(reg, nil, cmdutil.Check(func() error { return srv.Ready() }), log)
	srv = sidecar.New(sidecar.Config{Client: cl, Logger: log, Registerer: registerer, Fallback: obs})

	lns, b, err := listen(cfg)
	if err != nil {
		return err
	}
	// Serving stops when the drain is over, not when ctx ends.
	serveCtx, stopServing := context.WithCancel(context.Background())
	defer stopServing()
	g, gctx := errgroup.WithContext(serveCtx)
	g.Go(func() error { return srv.Run(gctx) })
	spin := busypoll.New(busypoll.Options{Spin: cfg.BusyPoll})
	if spin != nil {
		registerBusyPoll(registerer, spin)
	}
	if len(lns.http) > 0 {
		// fasthttp, the lookups answered on its requests (see
		// sidecar.ServeFastHTTP); traced, every request goes through
		// otelhttp's net/http handler instead.
		serve := srv.ServeFastHTTP
		if tracing.Enabled() {
			serve = srv.Adapt(tracing.HTTPHandler(srv, "tcs-sidecar"))
		}
		spinLns := make([]net.Listener, len(lns.http))
		for i, ln := range lns.http {
			spinLns[i] = spin.Listen(ln)
		}
		g.Go(func() error { return srv.Serve(gctx, serve, spinLns...) })
	}
	if lns.grpc != nil {
		gs := grpc.NewServer(tracing.GRPCServerOptions()...)
		srv.RegisterGRPC(gs)
		if cfg.Reflection {
			reflection.Register(gs)
		}
		g.Go(func() error { return gs.Serve(lns.grpc) })
		g.Go(func() error {
			<-gctx.Done()
			gs.GracefulStop()
			return nil
		})
	}
	g.Go(func() error { return drain(ctx, gctx, srv, cfg.DrainDelay, stopServing, log) })

	names := make([]string, len(cfg.Regions))
	for i, r := range cfg.Regions {
		names[i] = r.Name + "=" + r.Addr
	}
	log.Info("tcs-sidecar listening", "http", b.HTTP, "unix", b.Unix, "grpc", b.GRPC, "regions", strings.Join(names, ","), "tls", cfg.TLS, "token", cfg.Token != "")
	fmt.Fprintf(stdout, "tcs-sidecar: HTTP %s, unix %s, gRPC %s; regions %s\n", orNone(b.HTTP), orNone(b.Unix), orNone(b.GRPC), strings.Join(names, ","))
	if ready != nil {
		ready <- b
	}
	err = g.Wait()
	log.Info("tcs-sidecar stopped")
	return err
}

// drain waits for ctx (the signal) to end, then makes srv unready, keeps
// serving for delay and stops the listeners. It returns at once if serving
// ends first.
func drain(ctx, serving context.Context, srv *sidecar.Server, delay time.Duration, stop context.CancelFunc, log *slog.Logger) error {
	select {
	case <-ctx.Done():
	case <-serving.Done():
		return nil
	}
	srv.Drain()
	log.Info("stopping: unready, still answering", "drain_delay", delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-serving.Done():
	}
	stop()
	return nil
}

// probe GETs cfg.Probe from the sidecar cfg describes and fails unless it
// answers 200.
func probe(ctx context.Context, cfg *config, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	tr := &http.Transport{}
	url := "http://" + cfg.HTTPAddr + cfg.Probe
	if cfg.HTTPAddr == "" {
		url = "http://sidecar" + cfg.Probe
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", cfg.UnixSocket)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("--probe: %w", err)
	}
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("--probe %s: %w", cfg.Probe, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("--probe %s: %s: %s", cfg.Probe, res.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprint(stdout, string(body))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// registerBusyPoll registers tcs_sidecar_busy_poll_reads_total{outcome}:
// the reads of the HTTP connections of --busy-poll, caught spinning,
// missed (the spin ran out or was cut short) and parked (waited in the poller: after a
// miss, or without spinning).
func registerBusyPoll(reg prometheus.Registerer, g *busypoll.Group) {
	for _, o := range []struct {
		outcome string
		count   func(busypoll.Stats) uint64
	}{
		{"caught", func(s busypoll.Stats) uint64 { return s.Caught }},
		{"missed", func(s busypoll.Stats) uint64 { return s.Missed }},
		{"parked", func(s busypoll.Stats) uint64 { return s.Parked }},
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "tcs_sidecar_busy_poll_reads_total",
			Help:        "Reads of the HTTP connections of --busy-poll: caught (the spin got the request), missed (the spin ran out, or another connection's request came first) and parked (waited in the poller, after a miss or without spinning).",
			ConstLabels: prometheus.Labels{"outcome": o.outcome},
		}, func() float64 { return float64(o.count(g.Stats())) }))
	}
}

type listeners struct {
	http []net.Listener
	grpc net.Listener
}

// listen opens every listener cfg asks for, closing those opened when one
// fails.
func listen(cfg *config) (_ listeners, _ bound, err error) {
	var lns listeners
	var b bound
	defer func() {
		if err != nil {
			for _, ln := range lns.http {
				ln.Close()
			}
			if lns.grpc != nil {
				lns.grpc.Close()
			}
		}
	}()
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			return lns, b, fmt.Errorf("--http-addr: listen on %s: %w", cfg.HTTPAddr, err)
		}
		lns.http, b.HTTP = append(lns.http, ln), ln.Addr().String()
	}
	if cfg.UnixSocket != "" {
		ln, err := listenUnix(cfg.UnixSocket)
		if err != nil {
			return lns, b, err
		}
		lns.http, b.Unix = append(lns.http, ln), cfg.UnixSocket
	}
	if cfg.GRPCAddr != "" {
		ln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return lns, b, fmt.Errorf("--grpc-addr: listen on %s: %w", cfg.GRPCAddr, err)
		}
		lns.grpc, b.GRPC = ln, ln.Addr().String()
	}
	return lns, b, nil
}

// listenUnix listens on a Unix socket at path, replacing a socket file a
// sidecar that died left there; any other file there is an error. The
// socket file is removed when the listener closes.
func listenUnix(path string) (net.Listener, error) {
	switch fi, err := os.Lstat(path); {
	case err == nil && fi.Mode()&fs.ModeSocket != 0:
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--unix-socket: remove the stale socket %s: %w", path, err)
		}
	case err == nil:
		return nil, fmt.Errorf("--unix-socket %s: exists and is not a socket", path)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("--unix-socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--unix-socket: listen on %s: %w", path, err)
	}
	return ln, nil
}
