package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tcs-dev/tcs/catalog/httpapi"
	"github.com/tcs-dev/tcs/cmd/internal/backend"
	"github.com/tcs-dev/tcs/cmd/internal/catalogflags"
	"github.com/tcs-dev/tcs/cmd/internal/cmdutil"
	"github.com/tcs-dev/tcs/internal/auth"
)

// config is everything catalog is told on its command line and in its
// environment, checked.
type config struct {
	// Addr is the admin REST API's listen address (--addr).
	Addr string
	// StoreTimeout bounds each request's source-of-truth calls
	// (--store-timeout); positive.
	StoreTimeout time.Duration
	// RateLimits are the requests a second one caller, and one client
	// address before authentication, may send (--rate-limit,
	// --address-rate-limit).
	RateLimits *catalogflags.RateLimits
	// MigrateLayout asks for the DynamoDB table's move to the sharded
	// layout, then exit (--migrate-layout).
	MigrateLayout bool

	// PropagationRegions are the regions a change must reach for
	// GET /v1/tenants/{id}/propagation (--propagation-regions, aws); empty
	// means the regions the node registry lists.
	PropagationRegions []string
	// Nodes says how the catalog reaches the tcs nodes for the
	// propagation status (aws).
	Nodes NodeTLS
	// ScanToken is the replica-scan credential the catalog sends the tcs
	// nodes (TCS_SCAN_TOKEN); empty: the propagation route answers 501.
	ScanToken string

	// Backend selects and configures the source of truth.
	Backend *backend.Config
	// Security holds the credentials and TLS files, loaded when wiring.
	Security *cmdutil.Security
	// Obs are the logging and metrics flags every server shares.
	Obs *cmdutil.Flags

	// Version is set when --version was asked: run prints it and returns,
	// and nothing else was checked.
	Version bool
}

// parseConfig parses args and getenv into a config and checks it; every
// error names the flag or environment variable that was wrong. It opens no
// file, socket or table: the credentials file and the TLS certificates are
// read, and the backend opened, when run wires the binary.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("catalog", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	fs.StringVar(&c.Addr, "addr", cmdutil.EnvOr(getenv, "TCS_CATALOG_ADDR", "127.0.0.1:8080"), "listen address of the admin REST API (env TCS_CATALOG_ADDR)")
	c.Backend = backend.Register(fs, getenv)
	c.Security = cmdutil.RegisterSecurity(fs, getenv, auth.Admin, auth.Reader)
	c.Obs = cmdutil.RegisterFlags(fs, getenv, cmdutil.DefaultCatalogMetricsAddr)
	var envErrs []error
	fs.DurationVar(&c.StoreTimeout, "store-timeout", cmdutil.EnvDuration(getenv, "TCS_STORE_TIMEOUT", httpapi.DefaultStoreTimeout, &envErrs), "deadline of each request's source-of-truth calls; a store that does not answer in time gets the request a 503 with Retry-After, a write \"outcome unknown\" (env TCS_STORE_TIMEOUT)")
	c.RateLimits = catalogflags.Register(fs, getenv, &envErrs)
	fs.BoolVar(&c.MigrateLayout, "migrate-layout", false, "move the DynamoDB catalog table from the unsharded layout of TCS 0.x to the sharded one, then exit: once, with no catalog or publisher running, after the old publisher drained the old outbox (streamer publish --drain); running it again finishes an interrupted migration")
	regions := fs.String("propagation-regions", getenv("TCS_PROPAGATION_REGIONS"), "aws: comma-separated regions a change must reach for GET /v1/tenants/{id}/propagation and tcsctl wait, e.g. us-east-1,eu-west-1 (a listed region with no live tcs node is not done) (env TCS_PROPAGATION_REGIONS); empty: the regions of the nodes in the <prefix>-nodes table")
	fs.StringVar(&c.Nodes.CAFile, "nodes-ca-file", getenv("TCS_NODES_CA_FILE"), "aws: PEM CA bundle to verify the tcs nodes' certificates with, for the propagation status; implies TLS to every node (env TCS_NODES_CA_FILE). Default: TLS with the system's roots to nodes off loopback, plaintext to loopback ones")
	fs.StringVar(&c.Nodes.ServerName, "nodes-server-name", getenv("TCS_NODES_SERVER_NAME"), "aws: name to check in the tcs nodes' certificates instead of the host of their registered address (nodes register their pod IP in Kubernetes) (env TCS_NODES_SERVER_NAME)")
	fs.BoolVar(&c.Nodes.Plaintext, "nodes-plaintext", envBool(getenv, "TCS_NODES_PLAINTEXT", false, &envErrs), "aws: plaintext gRPC to every tcs node for the propagation status: the replica-scan token crosses the network in the clear; for nodes run with --insecure-i-know (env TCS_NODES_PLAINTEXT=true)")
	c.ScanToken = getenv("TCS_SCAN_TOKEN")
	version, err := c.Obs.Parse(fs, args)
	if err != nil {
		return nil, err
	}
	if c.Version = version; version {
		return c, nil
	}
	if err := errors.Join(envErrs...); err != nil {
		return nil, err
	}
	for _, r := range strings.Split(*regions, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.PropagationRegions = append(c.PropagationRegions, r)
		}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return c, nil
}

// NodeTLS says how the catalog dials the tcs nodes.
type NodeTLS struct {
	// CAFile holds the PEM roots that verify the nodes' certificates
	// (--nodes-ca-file); set, every node is reached over TLS.
	CAFile string
	// ServerName is checked in the nodes' certificates instead of the
	// host of their address (--nodes-server-name).
	ServerName string
	// Plaintext reaches every node without TLS (--nodes-plaintext).
	Plaintext bool
}

// check reports the first setting that cannot work, naming its flag.
func (c *config) check() error {
	if c.StoreTimeout <= 0 {
		return fmt.Errorf("--store-timeout %v: want a positive duration", c.StoreTimeout)
	}
	if err := c.RateLimits.Check(); err != nil {
		return err
	}
	if err := c.Backend.Validate(); err != nil {
		return err
	}
	if c.Nodes.Plaintext && (c.Nodes.CAFile != "" || c.Nodes.ServerName != "") {
		return errors.New("--nodes-plaintext excludes --nodes-ca-file and --nodes-server-name")
	}
	for _, r := range c.PropagationRegions {
		if strings.Trim(r, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return fmt.Errorf("--propagation-regions: %q is not a region name such as eu-west-1", r)
		}
	}
	if err := c.Security.Check(); err != nil { // the files are read when wiring
		return err
	}
	if err := c.Obs.Check(); err != nil {
		return err
	}
	return nil
}

// envBool is getenv(key) as a boolean, def when unset; a value that is not
// one is added to errs, naming key.
func envBool(getenv func(string) string, key string, def bool, errs *[]error) bool {
	v := getenv(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		*errs = append(*errs, fmt.Errorf("%s=%q: want true or false", key, v))
		return def
	}
	return b
}
