// Package cmdutil holds what every TCS binary's main shares: environment
// defaults for flags, the logger, the data directory layout, the
// signal-cancelled context, and the observability surface (--version,
// --log-level, the metrics port with /metrics, /healthz and /readyz, the
// labelled registry, gRPC request ids).
package cmdutil

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
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

// NewLogger returns a slog logger writing text or json to w, dropping
// records below level.
func NewLogger(format string, level slog.Level, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
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
