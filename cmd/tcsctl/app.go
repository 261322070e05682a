package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/internal/buildinfo"
	"github.com/tcs-dev/tcs/internal/jobrun"
)

// env is what a command gets from run: the environment and the streams.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Exit codes.
const (
	exitOK          = 0
	exitFinding     = 1
	exitError       = 2
	exitInterrupted = 130
)

// exitError carries an exit code other than exitError, with an optional
// message for stderr.
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

// finding is an outcome that is not an error of tcsctl but deserves exit
// code 1: drift found, a hostname not found, bad input lines.
func finding(format string, args ...any) error {
	return &exitCodeError{code: exitFinding, msg: fmt.Sprintf(format, args...)}
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"lookup", "look a hostname up in a region's tcs server (gRPC Lookup)", runLookup},
		{"get", "read a tenant from the catalog (the source of truth)", runGet},
		{"resync", "re-emit tenants through the stream so regions re-apply them", runResync},
		{"verify", "compare every region's replica with the source of truth", runVerify},
		{"repair", "verify, then resync exactly what drifted", runRepair},
		{"transform", "bulk-change tenants matching an expression, with optimistic concurrency", runTransform},
		{"backfill", "import tenants from a JSON Lines file", runBackfill},
		{"export", "write every tenant to a JSON Lines file", runExport},
		{"audit", "list audit records, or verify their hash chains (audit verify)", runAudit},
		{"infra", "create the AWS resources (apply) or print the CloudFormation templates (template)", runInfra},
		{"token", "issue a credential (token new) or print a token's credentials file line (token digest)", runToken},
	}
}

func (e *env) usage() {
	var b strings.Builder
	b.WriteString("usage: tcsctl COMMAND [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun tcsctl COMMAND -h for a command's flags, tcsctl --version for the build. Exit codes: 0 ok, 1 drift or a finding, 2 error, 130 interrupted.\n")
	io.WriteString(e.stderr, b.String())
}

func (e *env) dispatch(ctx context.Context, args []string) int {
	if len(args) == 0 {
		e.usage()
		return exitError
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		e.usage()
		return exitOK
	}
	if name == "--version" || name == "-version" || name == "version" {
		fmt.Fprintln(e.stdout, buildinfo.Get().String("tcsctl"))
		return exitOK
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, e, args[1:])
		var ec *exitCodeError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.Is(err, jobrun.ErrInterrupted):
			fmt.Fprintf(e.stderr, "tcsctl %s: interrupted; progress saved, run the same command again to continue\n", name)
			return exitInterrupted
		case errors.As(err, &ec):
			if ec.msg != "" {
				fmt.Fprintf(e.stderr, "tcsctl %s: %s\n", name, ec.msg)
			}
			return ec.code
		}
		fmt.Fprintf(e.stderr, "tcsctl %s: %v\n", name, err)
		return exitError
	}
	fmt.Fprintf(e.stderr, "tcsctl: unknown command %q\n", name)
	e.usage()
	return exitError
}

// connFlags are the flags every command takes: where the catalog and the
// regions are, and how to authenticate.
type connFlags struct {
	catalogURL  string
	token       string // the catalog's (admin or reader)
	lookupToken string // the regions' Lookup
	scanToken   string // the regions' ReplicaAdmin (verify, repair)
	regions     string
	tls         tlsOptions
	timeout     time.Duration
	getenv      func(string) string
}

func (c *connFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.catalogURL, "catalog", envOr(getenv, "TCS_CATALOG_URL", "http://127.0.0.1:8080"), "catalog admin REST API base URL (env TCS_CATALOG_URL)")
	// Tokens have no default, and the flags' defaults never hold one (so
	// -h prints no secret): the environment is read after parsing.
	c.getenv = getenv
	fs.StringVar(&c.token, "token", "", "bearer token for the catalog: admin to write, reader to read (default: env TCS_ADMIN_TOKEN, else TCS_READER_TOKEN)")
	fs.StringVar(&c.lookupToken, "lookup-token", "", "bearer token of role lookup for the regions' Lookup (default: env TCS_LOOKUP_TOKEN)")
	fs.StringVar(&c.scanToken, "scan-token", "", "bearer token of role replica-scan for the regions' replica admin API, used by verify and repair (default: env TCS_SCAN_TOKEN)")
	fs.StringVar(&c.regions, "regions", envOr(getenv, "TCS_REGIONS", defaultRegions), "regions and their tcs gRPC addresses, REGION=HOST:PORT,… (env TCS_REGIONS)")
	fs.BoolVar(&c.tls.Insecure, "insecure", getenv("TCS_INSECURE") == "true", "plaintext gRPC to every region and allow an http:// catalog that is not on loopback: tokens cross the network in the clear (env TCS_INSECURE=true). Default: TLS to non-loopback regions, plaintext to loopback ones (unless --tls or --ca-file)")
	fs.BoolVar(&c.tls.Always, "tls", false, "TLS to loopback regions too")
	fs.StringVar(&c.tls.CAFile, "ca-file", getenv("TCS_CA_FILE"), "PEM CA bundle to verify the regions' (and an https catalog's) certificates; implies TLS (env TCS_CA_FILE)")
	fs.StringVar(&c.tls.CertFile, "cert", getenv("TCS_CLIENT_CERT"), "PEM client certificate for mutual TLS (env TCS_CLIENT_CERT)")
	fs.StringVar(&c.tls.KeyFile, "key", getenv("TCS_CLIENT_KEY"), "PEM private key of --cert (env TCS_CLIENT_KEY)")
	fs.StringVar(&c.tls.ServerName, "server-name", "", "server name to verify in certificates, if not the address's host")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "bound on each request")
}

// jobFlags are the flags of long-running commands.
type jobFlags struct {
	workers       int
	rate          float64
	checkpoint    string
	checkpointDir string // TCS_CHECKPOINT_DIR
	restart       bool
}

func (j *jobFlags) register(fs *flag.FlagSet, getenv func(string) string, what string) {
	j.checkpointDir = getenv("TCS_CHECKPOINT_DIR")
	fs.IntVar(&j.workers, "workers", max(2, runtime.GOMAXPROCS(0)), "requests in flight at once")
	fs.Float64Var(&j.rate, "rate", 0, "at most this many "+what+" per second (0: no limit)")
	fs.StringVar(&j.checkpoint, "checkpoint", "", "checkpoint file for resuming (default: a file named after the work in TCS_CHECKPOINT_DIR, else the user cache dir's tcsctl/, else ./.tcsctl/; \"off\": none)")
	fs.BoolVar(&j.restart, "restart", false, "ignore a saved checkpoint and start from the beginning")
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

// stringList is a repeatable flag; each use may also hold a comma-separated
// list.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// newFlagSet returns a flag set for a command that prints its usage to
// stderr.
func newFlagSet(e *env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("tcsctl "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: tcsctl %s %s\n\nflags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args and returns the positional arguments, which may come
// before, between or after the flags (lookup HOSTNAME --region R); nargs
// says how many there must be (-1: any number).
func parse(fs *flag.FlagSet, args []string, nargs int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitCodeError{code: exitError}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if nargs >= 0 && len(pos) != nargs {
		fs.Usage()
		return nil, &exitCodeError{code: exitError, msg: fmt.Sprintf("want %d argument(s), got %d: %q", nargs, len(pos), pos)}
	}
	return pos, nil
}

// client is what a command talks to, built from connFlags.
type client struct {
	catalog *httpclient.Client
	dialer  *dialer
	regions []region
	timeout time.Duration
}

func (c *connFlags) client(e *env) (*client, error) {
	regions, err := parseRegions(c.regions)
	if err != nil {
		return nil, err
	}
	c.fromEnv()
	if c.tls.Insecure && (c.tls.Always || c.tls.CAFile != "") {
		return nil, errors.New("--insecure excludes --tls and --ca-file")
	}
	if c.tls.CAFile != "" {
		c.tls.Always = true
	}
	if u, err := url.Parse(c.catalogURL); err == nil && u.Scheme == "http" && !isLoopback(u.Host) && !c.tls.Insecure {
		return nil, fmt.Errorf("--catalog %s: plaintext HTTP to a host that is not loopback would send the token in the clear: use https://, or --insecure", c.catalogURL)
	}
	hc := &http.Client{Timeout: c.timeout}
	if strings.HasPrefix(c.catalogURL, "https:") {
		cfg, err := c.tls.config()
		if err != nil {
			return nil, err
		}
		hc.Transport = &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: 64}
	} else {
		hc.Transport = &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}
	}
	cat, err := httpclient.New(c.catalogURL, httpclient.WithToken(c.token), httpclient.WithHTTPClient(hc),
		httpclient.WithNoTokenHint("(tcsctl has no catalog token, and none by default: --token or TCS_ADMIN_TOKEN)"))
	if err != nil { // New refuses only a URL that is not http(s)
		return nil, fmt.Errorf("--catalog %q: want an http:// or https:// URL", c.catalogURL)
	}
	d, err := newDialer(c.tls, c.lookupToken, c.scanToken)
	if err != nil {
		return nil, err
	}
	if c.tls.Insecure {
		var remote []string
		for _, r := range regions {
			if !isLoopback(r.Addr) {
				remote = append(remote, r.Name)
			}
		}
		if len(remote) > 0 {
			sort.Strings(remote)
			fmt.Fprintf(e.stderr, "tcsctl: warning: plaintext gRPC (--insecure) to non-loopback regions %s: tokens cross the network in the clear\n", strings.Join(remote, ", "))
		}
	}
	return &client{catalog: cat, dialer: d, regions: regions, timeout: c.timeout}, nil
}

func (c *client) Close() { c.dialer.Close() }

// fromEnv fills the tokens not given as flags from the environment.
func (c *connFlags) fromEnv() {
	if c.getenv == nil {
		return
	}
	if c.token == "" {
		c.token = envOr(c.getenv, "TCS_ADMIN_TOKEN", c.getenv("TCS_READER_TOKEN"))
	}
	if c.lookupToken == "" {
		c.lookupToken = c.getenv("TCS_LOOKUP_TOKEN")
	}
	if c.scanToken == "" {
		c.scanToken = c.getenv("TCS_SCAN_TOKEN")
	}
}
