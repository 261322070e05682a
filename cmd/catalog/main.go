// Command catalog serves the admin REST API over the embedded source of
// truth (a bbolt file under --data).
package main

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
	"syscall"

	"github.com/tcs-dev/tcs/catalog/bolt"
	"github.com/tcs-dev/tcs/catalog/httpapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "catalog:", err)
		}
		os.Exit(2)
	}
}

// run is main with its dependencies passed in, so tests can call it.
// ready, if not nil, receives the listening address once the API serves.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runWithReady(ctx, args, getenv, stdout, stderr, nil)
}

func runWithReady(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "listen address of the admin REST API (env TCS_CATALOG_ADDR)")
	dataDir := fs.String("data", envOr(getenv, "TCS_DATA_DIR", "data"), "data directory; the source of truth is DATA/catalog.db (env TCS_DATA_DIR)")
	tokensFile := fs.String("tokens-file", getenv("TCS_TOKENS_FILE"), "file of `ROLE TOKEN [NAME]` lines (env TCS_TOKENS_FILE); TCS_ADMIN_TOKEN and TCS_READER_TOKEN add to it")
	logFormat := fs.String("log-format", envOr(getenv, "TCS_LOG_FORMAT", "text"), "log format: text or json (env TCS_LOG_FORMAT)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	tokens, err := httpapi.LoadTokens(*tokensFile, getenv)
	if err != nil {
		return err
	}
	if tokens.Len() == 0 {
		return errors.New("no API tokens configured: set TCS_ADMIN_TOKEN (and TCS_READER_TOKEN), or pass --tokens-file")
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	store, err := bolt.Open(filepath.Join(*dataDir, "catalog.db"), bolt.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	api := httpapi.New(httpapi.Config{Store: store, Tokens: tokens, Logger: log})
	log.Info("catalog admin API listening", "addr", ln.Addr().String(), "data", *dataDir)
	fmt.Fprintf(stdout, "catalog: admin REST API on http://%s (OpenAPI at /openapi.json)\n", ln.Addr())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = httpapi.Serve(ctx, ln, api)
	log.Info("catalog stopped")
	return err
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
