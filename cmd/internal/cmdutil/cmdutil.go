// Package cmdutil holds what every TCS binary's main shares: environment
// defaults for flags, the logger, the data directory layout, and the
// signal-cancelled context.
package cmdutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tcs-dev/tcs/catalog/httpapi"
)

// Main runs a binary's run function with a context cancelled by SIGINT or
// SIGTERM, prints its error, and exits: 0 on success, 2 on error.
func Main(name string, run func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		os.Exit(2)
	}
}

// EnvOr returns getenv(key), or def if it is empty.
func EnvOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// NewLogger returns a slog logger writing text or json to w.
func NewLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// Data is the layout of the embedded backends' data directory, shared by
// every binary so that they find each other's files.
type Data string

// Catalog is the source of truth (bbolt).
func (d Data) Catalog() string { return filepath.Join(string(d), "catalog.db") }

// Stream is the embedded ordered stream (bbolt log).
func (d Data) Stream() string { return filepath.Join(string(d), "stream.db") }

// Replica is a region's replica table (bbolt).
func (d Data) Replica(region string) string {
	return filepath.Join(string(d), "replica-"+region+".db")
}

// Ensure creates the directory if it does not exist.
func (d Data) Ensure() error {
	if err := os.MkdirAll(string(d), 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// ListenMetrics listens on addr and returns a function that serves
// Prometheus metrics from g on it (any path) until its context ends. An
// empty addr means no metrics endpoint: serve is nil. Listening before
// anything starts makes a busy port fail the start, naming it.
func ListenMetrics(addr string, g prometheus.Gatherer) (serve func(context.Context) error, err error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	return func(ctx context.Context) error { return httpapi.Serve(ctx, ln, h) }, nil
}

// EnvInt returns the whole number in the environment variable key, or def
// if it is unset; a malformed value is added to errs, naming key and what it
// should be (want), and def is returned.
func EnvInt(getenv func(string) string, key string, def int, want string, errs *[]error) int {
	v := getenv(key)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s %q: want %s", key, v, want))
		return def
	}
	return n
}

// EnvDuration is EnvInt for durations.
func EnvDuration(getenv func(string) string, key string, def time.Duration, errs *[]error) time.Duration {
	v := getenv(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s %q: want a duration such as %v", key, v, def))
		return def
	}
	return d
}
