//go:build linux

package chaos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/freeport"
)

// Tokens the suite's catalog and tcs nodes accept.
const (
	AdminToken  = "chaos-admin-token-of-at-least-32-bytes"
	ReaderToken = "chaos-reader-token-of-at-least-32-bytes"
	ScanToken   = "chaos-scan-token-of-at-least-32-bytes"
)

// Environment variables that choose the emulators' ports (default: free
// loopback ports). They are the names infra/run-aws-local.sh reads.
const (
	DynamoDBPortEnv = "DYNAMODB_PORT"
	KinesisPortEnv  = "KINESIS_PORT"
	SNSSQSPortEnv   = "SNSSQS_PORT"
)

// Topology is the AWS topology on the local emulators, one process per
// binary: catalog, streamer publish, per region one streamer apply and one
// tcs, and a second streamer apply in the first region.
type Topology struct {
	Regions    []string
	CatalogURL string            // http://127.0.0.1:port
	TCSAddrs   map[string]string // region → host:port
	Env        []string          // the binaries' environment (tcsctl too)
	BinDir     string

	DynamoDB, Kinesis, SNSSQS *emulators.Process

	Catalog  *Proc
	Publish  *Proc
	Appliers map[string][]*Proc // region → appliers (two in Regions[0])
	TCS      map[string]*Proc

	// applierMetrics is each applier's /metrics URL, by Proc.
	applierMetrics map[*Proc]string
	// publishMetrics is the publisher's metrics address (host:port).
	publishMetrics string
	// tcsMetrics is each region's tcs node's metrics address (host:port).
	tcsMetrics map[string]string
}

// MetricsTargets returns the host:port of every process that serves
// /metrics on a metrics port (the publisher, the appliers and the tcs
// nodes), by process name, for a Prometheus scraping the topology.
func (t *Topology) MetricsTargets() map[string]string {
	out := map[string]string{"publish": t.publishMetrics}
	for p, url := range t.applierMetrics {
		out[p.Name] = strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	}
	for r, addr := range t.tcsMetrics {
		out[t.TCS[r].Name] = addr
	}
	return out
}

// Processes lists every binary's process.
func (t *Topology) Processes() []*Proc {
	ps := []*Proc{t.Catalog, t.Publish}
	for _, r := range t.Regions {
		ps = append(ps, t.Appliers[r]...)
		ps = append(ps, t.TCS[r])
	}
	return ps
}

// BuildBinaries builds catalog, streamer, tcs and tcsctl from the module
// at root into dir.
func BuildBinaries(ctx context.Context, root, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
		"./cmd/catalog", "./cmd/streamer", "./cmd/tcs", "./cmd/tcsctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build the binaries: %v\n%s", err, out)
	}
	return nil
}

func envPort(getenv func(string) string, name string) (int, error) {
	v := getenv(name)
	if v == "" {
		return 0, nil
	}
	p, err := strconv.Atoi(v)
	if err != nil || p <= 0 || p > 65535 {
		return 0, fmt.Errorf("%s=%q: want a port number 1-65535", name, v)
	}
	return p, nil
}

// replicaReadTimeout is the tcs nodes' --read-timeout (see StartTopology).
const replicaReadTimeout = 300 * time.Millisecond

// StartTopology starts the emulators (ports from getenv, see
// DynamoDBPortEnv…; free ports otherwise), creates the resources with
// tcsctl infra apply, and starts every binary from binDir, logging into
// logDir, and waits until all serve. cacheTTL is the tcs nodes' --cache-ttl.
// Stop stops it all; if the suite dies instead, the kernel kills every
// process it started.
func StartTopology(ctx context.Context, binDir, logDir string, regions []string, cacheTTL time.Duration, getenv func(string) string) (_ *Topology, err error) {
	t := &Topology{
		Regions: regions, BinDir: binDir,
		TCSAddrs: map[string]string{}, Appliers: map[string][]*Proc{}, TCS: map[string]*Proc{},
		applierMetrics: map[*Proc]string{}, tcsMetrics: map[string]string{},
	}
	defer func() {
		if err != nil {
			t.Stop()
		}
	}()
	for _, e := range []struct {
		kind emulators.Kind
		env  string
		p    **emulators.Process
	}{{emulators.DynamoDB, DynamoDBPortEnv, &t.DynamoDB}, {emulators.Kinesis, KinesisPortEnv, &t.Kinesis}, {emulators.SNSSQS, SNSSQSPortEnv, &t.SNSSQS}} {
		port, err := envPort(getenv, e.env)
		if err != nil {
			return nil, err
		}
		if *e.p, err = emulators.Start(e.kind, port); err != nil {
			return nil, err
		}
	}
	aws := emulators.AWS{DynamoDB: t.DynamoDB.Endpoint, Kinesis: t.Kinesis.Endpoint, SNSSQS: t.SNSSQS.Endpoint}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"TCS_BACKEND=aws", "TCS_AWS_PREFIX=chaos", "TCS_POLL_INTERVAL=100ms", // kinesalite has no read limit
		"TCS_ADMIN_TOKEN=" + AdminToken, "TCS_READER_TOKEN=" + ReaderToken, "TCS_SCAN_TOKEN=" + ScanToken}
	for k, v := range aws.Env() {
		env = append(env, k+"="+v)
	}
	t.Env = env

	apply := exec.CommandContext(ctx, filepath.Join(binDir, "tcsctl"), "infra", "apply", "--regions", strings.Join(regions, ","), "--shards", "2")
	apply.Env = env
	if out, err := apply.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("tcsctl infra apply: %v\n%s", err, out)
	}

	newProc := func(name, bin string, ready func(context.Context) error, args ...string) *Proc {
		return &Proc{Name: name, path: filepath.Join(binDir, bin), args: args, env: env,
			logPath: filepath.Join(logDir, name+".log"), ready: ready}
	}
	catalogAddr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	t.CatalogURL = "http://" + catalogAddr
	t.Catalog = newProc("catalog", "catalog", httpReady(t.CatalogURL+"/readyz"), "--addr", catalogAddr)
	metricsAddr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	t.publishMetrics = metricsAddr
	// A fixed worker id: a publisher restarted after a kill adopts its own
	// outbox shard leases at once instead of waiting for them to expire.
	t.Publish = newProc("publish", "streamer", httpReady("http://"+metricsAddr+"/metrics"), "publish", "--worker-id", "publish", "--metrics-addr", metricsAddr)
	for i, r := range regions {
		n := 1
		if i == 0 {
			n = 2 // two appliers share the first region's shards
		}
		for w := 1; w <= n; w++ {
			maddr, err := freeport.Addr()
			if err != nil {
				return nil, err
			}
			name := fmt.Sprintf("apply-%s-%d", r, w)
			p := newProc(name, "streamer", httpReady("http://"+maddr+"/metrics"),
				"apply", "--region", r, "--worker-id", name, "--metrics-addr", maddr)
			t.Appliers[r] = append(t.Appliers[r], p)
			t.applierMetrics[p] = "http://" + maddr + "/metrics"
		}
		addr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		maddr, err := freeport.Addr()
		if err != nil {
			return nil, err
		}
		t.TCSAddrs[r], t.tcsMetrics[r] = addr, maddr
		// --read-timeout: the default 100 ms is sized for DynamoDB (a few
		// ms a read); DynamoDB Local, one JVM serving every region's
		// replica beside a dozen processes on two cores, took longer twice
		// in a row often enough that region nodes answered Unavailable in
		// the baseline, with no fault injected, and a client's failover
		// found every region so (kill -9 tcs: 2 to 4 lookups of 526 failed,
		// bound 99.9%). The freeze of DynamoDB Local still runs every read
		// out.
		t.TCS[r] = newProc("tcs-"+r, "tcs", grpcReady(addr), "--region", r, "--addr", addr, "--node-id", "chaos-"+r,
			"--cache-ttl", cacheTTL.String(), "--read-timeout", replicaReadTimeout.String(), "--metrics-addr", maddr)
	}
	for _, p := range t.Processes() {
		if err := p.Start(); err != nil {
			return nil, err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, p := range t.Processes() {
		if err := p.WaitReady(rctx); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// RegionsFlag is the REGION=HOST:PORT,… list tcsctl takes.
func (t *Topology) RegionsFlag() string {
	var parts []string
	for _, r := range t.Regions {
		parts = append(parts, r+"="+t.TCSAddrs[r])
	}
	return strings.Join(parts, ",")
}

// Stop stops the binaries (SIGTERM, so tcs nodes remove their queues while
// SNS/SQS still runs), then the emulators.
func (t *Topology) Stop() {
	for _, e := range []*emulators.Process{t.DynamoDB, t.Kinesis, t.SNSSQS} {
		if e != nil {
			_ = e.Signal(syscall.SIGCONT) // a frozen emulator would hold the binaries' stop up
		}
	}
	for _, p := range t.Processes() {
		if p != nil {
			_ = p.Stop(5 * time.Second)
		}
	}
	for _, e := range []*emulators.Process{t.DynamoDB, t.Kinesis, t.SNSSQS} {
		if e != nil {
			e.Stop()
		}
	}
}

func httpReady(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, res.Status)
		}
		return nil
	}
}

func grpcReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		res, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s health: %s", addr, res.GetStatus())
		}
		return nil
	}
}
