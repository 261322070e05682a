package cmdutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/httpserve"
)

// Default metrics addresses, one loopback port per binary so that binaries
// started side by side on one machine (make run-aws-local) do not collide.
// Several processes of one binary (a tcs per region) need their own
// --metrics-addr: a default address that is busy is skipped with a
// warning rather than failing the start.
const (
	DefaultCatalogMetricsAddr   = "127.0.0.1:9180"
	DefaultPublishMetricsAddr   = "127.0.0.1:9181"
	DefaultApplyMetricsAddr     = "127.0.0.1:9182"
	DefaultTCSMetricsAddr       = "127.0.0.1:9183"
	DefaultDevMetricsAddr       = "127.0.0.1:9184"
	DefaultReconcileMetricsAddr = "127.0.0.1:9185"
)

// Flags are the flags every server binary shares: --version, --log-level,
// --log-format and --metrics-addr.
type Flags struct {
	Version        bool
	LogLevel       string
	LogFormat      string
	MetricsAddr    string
	metricsDefault string
	fs             *flag.FlagSet
	metricsEnv     bool
}

// RegisterFlags adds the shared flags to fs. metricsDefault is the
// binary's default --metrics-addr ("" registers no --metrics-addr).
func RegisterFlags(fs *flag.FlagSet, getenv func(string) string, metricsDefault string) *Flags {
	f := &Flags{fs: fs, metricsDefault: metricsDefault}
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	fs.StringVar(&f.LogLevel, "log-level", EnvOr(getenv, "TCS_LOG_LEVEL", "info"), "least severe log level written: debug, info, warn or error (env TCS_LOG_LEVEL)")
	fs.StringVar(&f.LogFormat, "log-format", EnvOr(getenv, "TCS_LOG_FORMAT", "text"), "log format: text or json (env TCS_LOG_FORMAT)")
	if metricsDefault != "" {
		v := getenv("TCS_METRICS_ADDR")
		f.metricsEnv = v != ""
		if v == "" {
			v = metricsDefault
		}
		fs.StringVar(&f.MetricsAddr, "metrics-addr", v, "serve Prometheus /metrics, /healthz and /readyz on this address (env TCS_METRICS_ADDR); empty or \"none\": no metrics endpoint. The default address, when busy (another process of this binary holds it), is skipped with a warning")
	}
	return f
}

// PrintVersion writes the --version line of binary to w if --version was
// given, and reports whether it did (the binary then exits).
func (f *Flags) PrintVersion(binary string, w io.Writer) bool {
	if !f.Version {
		return false
	}
	fmt.Fprintln(w, buildinfo.Get().String(binary))
	return true
}

// Logger returns the logger the flags ask for, writing to w.
func (f *Flags) Logger(w io.Writer) (*slog.Logger, error) {
	level, err := ParseLevel(f.LogLevel)
	if err != nil {
		return nil, err
	}
	return NewLogger(f.LogFormat, level, w)
}

// Parse parses args into fs, on which f was registered, the way every
// binary's parseConfig starts: it reports whether --version was asked
// (then nothing else is checked), and refuses positional arguments.
func (f *Flags) Parse(fs *flag.FlagSet, args []string) (version bool, err error) {
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if f.Version {
		return true, nil
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return false, nil
}

// Check checks --log-level and --log-format without making a logger: what
// a binary's parseConfig calls, the logger itself being made when wiring.
func (f *Flags) Check() error {
	_, err := f.Logger(io.Discard)
	return err
}

// ParseLevel parses a --log-level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// metricsExplicit reports whether --metrics-addr was chosen (flag or
// environment) rather than defaulted.
func (f *Flags) metricsExplicit() bool {
	if f.metricsEnv {
		return true
	}
	set := false
	f.fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "metrics-addr" })
	return set
}

// ListenMetrics listens on --metrics-addr and returns a function serving h
// there until its context ends, and the address bound (logged as "metrics
// listening" with addr). "none" or "" means
// no endpoint: serve is nil. Listening before anything starts makes a busy
// port fail the start, naming it; only the binary's default address, when
// busy, is skipped with a warning on log (another process of the same
// binary on this machine holds it).
func (f *Flags) ListenMetrics(h http.Handler, log *slog.Logger) (serve func(context.Context) error, bound net.Addr, err error) {
	addr := f.MetricsAddr
	if addr == "" || addr == "none" {
		return nil, nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) && !f.metricsExplicit() {
			log.Warn("default metrics address busy: serving no /metrics, /healthz or /readyz; set --metrics-addr", "addr", addr, "err", err)
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	log.Info("metrics listening", "addr", ln.Addr().String())
	return func(ctx context.Context) error { return httpserve.Serve(ctx, ln, h) }, ln.Addr(), nil
}

// Registry returns a new registry and the registerer a binary's parts
// register with, which adds component (catalog, publish, apply, tcs, dev)
// to every metric. The registry already holds the Go and process
// collectors and tcs_build_info, labelled with component and, if not
// empty, region: the one region a process serves. The parts' own metrics
// get no region from here: the applier's, the broadcaster's and the
// invalidation feed's carry it themselves (a second region label would be
// refused), and a caller wraps the registerer with it for parts that do
// not (the lookup server's).
func Registry(component, region string) (*prometheus.Registry, prometheus.Registerer) {
	reg := prometheus.NewRegistry()
	process := prometheus.Labels{"component": component}
	if region != "" {
		process["region"] = region
	}
	prometheus.WrapRegistererWith(process, reg).MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildinfo.Get().Collector())
	return reg, prometheus.WrapRegistererWith(prometheus.Labels{"component": component}, reg)
}

// Probe says whether a process is healthy (or ready): nil, or why not.
type Probe func(context.Context) error

// Check adapts a check that takes no context (the lookup server's Ready
// and Live) to a Probe.
func Check(f func() error) Probe {
	return func(context.Context) error { return f() }
}

// AllOf is a Probe that passes when every one of probes (nil ones always
// pass) does, naming what failed.
func AllOf(probes map[string]Probe) Probe {
	return func(ctx context.Context) error {
		var errs []error
		for name, p := range probes {
			if p == nil {
				continue
			}
			if err := p(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return errors.Join(errs...)
	}
}

// ProbeTimeout bounds one /healthz or /readyz check.
const ProbeTimeout = 5 * time.Second

// ObsHandler serves /metrics from g, /healthz from live and /readyz from
// ready (200 "ok", or 503 and the reason; a nil probe always answers ok),
// and 404 elsewhere. Every request is logged at debug: scrapes and probes
// come every few seconds.
func ObsHandler(g prometheus.Gatherer, live, ready Probe, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	probe := func(check Probe) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			if check != nil {
				ctx, cancel := context.WithTimeout(r.Context(), ProbeTimeout)
				err := check(ctx)
				cancel()
				if err != nil {
					w.WriteHeader(http.StatusServiceUnavailable)
					fmt.Fprintln(w, err)
					return
				}
			}
			fmt.Fprintln(w, "ok")
		}
	}
	mux.Handle("GET /healthz", probe(live))
	mux.Handle("GET /readyz", probe(ready))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		start := time.Now()
		mux.ServeHTTP(rec, r)
		log.LogAttrs(r.Context(), slog.LevelDebug, "metrics port request", slog.String("method", r.Method),
			slog.String("path", truncate(r.URL.Path, 256)), slog.Int("status", rec.code), slog.Duration("duration", time.Since(start)))
	})
}

type codeRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *codeRecorder) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *codeRecorder) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *codeRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
