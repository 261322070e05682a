package cmdutil

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/internal/testio"
)

// freeAddr returns a loopback address nothing listens on (just now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func parse(t *testing.T, env map[string]string, def string, args ...string) *Flags {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := RegisterFlags(fs, func(k string) string { return env[k] }, def)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f
}

// The default metrics address is served without any flag; when another
// process holds it the binary starts without metrics and says so, while an
// address asked for (flag or environment) that is busy fails the start.
func TestListenMetricsDefaultAndBusy(t *testing.T) {
	t.Parallel()
	def := freeAddr(t)
	var logs testio.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	f := parse(t, nil, def)
	serve, bound, err := f.ListenMetrics(http.NotFoundHandler(), log)
	if err != nil || serve == nil || bound.String() != def {
		t.Fatalf("default: serve %v, bound %v, err %v; want the default %s served", serve != nil, bound, err, def)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	defer func() { cancel(); <-done }()

	// def is now busy.
	serve2, _, err := parse(t, nil, def).ListenMetrics(http.NotFoundHandler(), log)
	if err != nil || serve2 != nil {
		t.Errorf("busy default: serve %v, err %v; want no endpoint and no error", serve2 != nil, err)
	}
	if !strings.Contains(logs.String(), "default metrics address busy") {
		t.Errorf("busy default not logged:\n%s", logs.String())
	}
	for name, f := range map[string]*Flags{
		"flag": parse(t, nil, "127.0.0.1:1", "--metrics-addr", def),
		"env":  parse(t, map[string]string{"TCS_METRICS_ADDR": def}, "127.0.0.1:1"),
	} {
		if _, _, err := f.ListenMetrics(http.NotFoundHandler(), log); err == nil || !strings.Contains(err.Error(), "metrics: listen on "+def) {
			t.Errorf("busy address from %s: err %v, want one naming %s", name, err, def)
		}
	}
	for _, off := range []*Flags{parse(t, nil, def, "--metrics-addr", ""), parse(t, map[string]string{"TCS_METRICS_ADDR": "none"}, def)} {
		if serve, _, err := off.ListenMetrics(http.NotFoundHandler(), log); serve != nil || err != nil {
			t.Errorf("--metrics-addr %q: serve %v, err %v; want none", off.MetricsAddr, serve != nil, err)
		}
	}
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn, "warning": slog.LevelWarn, "error": slog.LevelError} {
		if got, err := ParseLevel(in); err != nil || got != want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseLevel("trace"); err == nil || !strings.Contains(err.Error(), `--log-level "trace"`) {
		t.Errorf("ParseLevel(trace): %v, want an error naming the flag", err)
	}
	// TCS_LOG_LEVEL is the default; the flag wins.
	f := parse(t, map[string]string{"TCS_LOG_LEVEL": "debug"}, "")
	var b bytes.Buffer
	log, err := f.Logger(&b)
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("shown")
	f = parse(t, map[string]string{"TCS_LOG_LEVEL": "debug"}, "", "--log-level", "info")
	if log, err = f.Logger(&b); err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	if !strings.Contains(b.String(), "shown") || strings.Contains(b.String(), "hidden") {
		t.Errorf("logs %q: want the debug line at TCS_LOG_LEVEL=debug only", b.String())
	}
}

func TestObsHandler(t *testing.T) {
	t.Parallel()
	reg, parts := Registry("apply", "eu-west-1")
	parts.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "tcs_test_total", Help: "A part's metric.", ConstLabels: prometheus.Labels{"region": "eu-west-1"}}))
	var logs testio.SyncBuffer
	notReady := errors.New("holds no shard lease")
	h := ObsHandler(reg, nil, func(context.Context) error { return notReady }, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	for _, c := range []struct {
		path string
		code int
		body string
	}{
		{"/metrics", 200, `tcs_build_info{component="apply",goversion=`},
		{"/metrics", 200, `go_goroutines{component="apply",region="eu-west-1"}`},
		{"/metrics", 200, `tcs_build_info{component="apply",goversion=`},
		{"/metrics", 200, `tcs_test_total{component="apply",region="eu-west-1"} 0`},
		{"/healthz", 200, "ok\n"},
		{"/readyz", 503, "holds no shard lease\n"},
		{"/", 404, ""},
		{"/metrics/x", 404, ""},
	} {
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodGet, c.path, nil)
		h.ServeHTTP(rec, req)
		if rec.code != c.code || !strings.Contains(rec.body.String(), c.body) {
			t.Errorf("GET %s: %d %q, want %d containing %q", c.path, rec.code, rec.body.String(), c.code, c.body)
		}
	}
	if n := logs.Count(`level=DEBUG msg="metrics port request"`); n != 8 {
		t.Errorf("%d debug request lines, want 8:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("requests logged above debug:\n%s", logs.String())
	}
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = 200
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}
