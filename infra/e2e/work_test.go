package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tcs-dev/tcs/catalog/httpclient"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/internal/leasetable"
	"github.com/tcs-dev/tcs/internal/testwait"
	"github.com/tcs-dev/tcs/tcs/client"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/worktest"
)

// The emulators of the tests that use them directly (TestWorkAWS); the
// run-aws-local tests start their own through the script.
func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// workLease is the work pools' lease duration in TestWorkAWS: short, so that
// a takeover is quick, yet long enough for a member's first round on
// DynamoDB Local (a conditional write per bucket taken) to be confirmed
// within 9/10 of it on a busy machine.
const workLease = 5 * time.Second

// proc is a binary the test runs, its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // what Wait returned, once done is closed
}

// topology is a set of binaries run against the emulators.
type topology struct {
	t     *testing.T
	bin   string   // the binaries' directory
	env   []string // every process's environment
	logs  string
	procs []*proc
}

// buildBinaries builds catalog, streamer and tcs into a temporary
// directory.
func buildBinaries(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	c := exec.Command("go", "build", "-o", bin+"/", "./cmd/catalog", "./cmd/streamer", "./cmd/tcs")
	c.Dir = repoRoot(t)
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// start runs the binary name (a file of bin) with args; the process is
// killed if the test process dies (parent-death signal), and stopped with
// SIGTERM (then SIGKILL after 15 s) when the test ends.
func (tp *topology) start(label, name string, args ...string) *proc {
	tp.t.Helper()
	p := &proc{name: label, log: filepath.Join(tp.logs, label+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		tp.t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(tp.bin, name), args...)
	p.cmd.Env = tp.env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		tp.t.Fatalf("start %s: %v", label, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	tp.procs = append(tp.procs, p)
	tp.t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			tp.t.Errorf("%s did not stop within 15 s of SIGTERM; killing it", label)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// kill ends p with SIGKILL, as a crash would, and waits for it.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s: %v", p.name, err)
	}
	<-p.done
}

// dump returns the tail of every process's log, and which exited.
func (tp *topology) dump() string {
	var b strings.Builder
	for _, p := range tp.procs {
		data, _ := os.ReadFile(p.log)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		state := "running"
		select {
		case <-p.done:
			state = fmt.Sprintf("exited: %v", p.err)
		default:
		}
		fmt.Fprintf(&b, "--- %s (%s):\n%s\n", p.name, state, data)
	}
	return b.String()
}

// alive fails the test if a process other than those in dead has exited.
func (tp *topology) alive(dead ...*proc) {
	tp.t.Helper()
	for _, p := range tp.procs {
		if slices.Contains(dead, p) {
			continue
		}
		select {
		case <-p.done:
			tp.t.Fatalf("%s exited: %v\n%s", p.name, p.err, tp.dump())
		default:
		}
	}
}

// serving waits until the gRPC server at addr reports SERVING.
func (tp *topology) serving(addr string) {
	tp.t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tp.t.Fatal(err)
	}
	defer conn.Close()
	testwait.Until(tp.t, time.Minute, 50*time.Millisecond, addr+" to report SERVING", func() (bool, string) {
		tp.alive()
		hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			return false, err.Error()
		}
		return hc.Status == healthpb.HealthCheckResponse_SERVING, hc.Status.String()
	})
}

// poolMember is a member of the pool joined through a tcs/client, and what
// it counts on: Work's latest assignment until its ValidUntil, or, run with
// RunPerTenant, the tenants whose run is in progress (each run lasts until
// its ctx ends, which is when the member loses the tenant).
type poolMember struct {
	id     string
	addrs  []string
	runner bool

	mu      sync.Mutex
	latest  client.Assignment
	running map[string]uint64
	runs    int
	dead    bool // killed: counts on nothing

	stop context.CancelFunc
	done chan struct{}
}

// owned is what the member counts on at now.
func (m *poolMember) owned(now time.Time) map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.dead:
		return nil
	case m.runner:
		return maps.Clone(m.running)
	case !m.latest.ValidUntil.After(now):
		return nil
	}
	return maps.Clone(m.latest.Tenants)
}

// joinPool joins pool "reports" as member id through addrs (in the
// client's order: the next when a node fails), with Work, or RunPerTenant
// when runner.
func joinPool(t *testing.T, id string, addrs []string, runner bool) *poolMember {
	t.Helper()
	c, err := client.New(context.Background(), client.WithRegions(addrs...), client.WithToken("dev-lookup-token"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	m := &poolMember{id: id, addrs: addrs, runner: runner, running: map[string]uint64{}, stop: cancel, done: make(chan struct{})}
	if runner {
		go func() {
			defer close(m.done)
			err := c.RunPerTenant(ctx, "reports", 1, 100*time.Millisecond, func(ctx context.Context, tenantID string, token uint64) error {
				m.mu.Lock()
				m.running[tenantID] = token
				m.runs++
				m.mu.Unlock()
				<-ctx.Done()
				m.mu.Lock()
				if m.running[tenantID] == token {
					delete(m.running, tenantID)
				}
				m.mu.Unlock()
				return nil
			}, nil, client.WithMember(id))
			if err != nil {
				t.Errorf("RunPerTenant of %s: %v", id, err)
			}
		}()
	} else {
		as, err := c.Work(ctx, "reports", 1, client.WithMember(id))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			defer close(m.done)
			for a := range as {
				m.mu.Lock()
				m.latest = a
				m.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { cancel(); <-m.done })
	return m
}

// kill makes the member count on nothing from now on and stops it, as if
// its process had died.
func (m *poolMember) kill() {
	m.mu.Lock()
	m.dead = true
	m.mu.Unlock()
	m.stop()
	<-m.done
}

// ownedExactlyOnce reports whether the live members together count on
// exactly the tenants want, each once, and says who owns what.
func ownedExactlyOnce(members []*poolMember, want []string) (bool, string) {
	now := time.Now()
	owner := map[string]string{}
	var b strings.Builder
	ok := true
	for _, m := range members {
		owned := m.owned(now)
		fmt.Fprintf(&b, "%s %v; ", m.id, slices.Sorted(maps.Keys(owned)))
		for id := range owned {
			if o, dup := owner[id]; dup {
				ok = false
				fmt.Fprintf(&b, "%s owned by %s and %s; ", id, o, m.id)
			}
			owner[id] = m.id
		}
	}
	got := slices.Sorted(maps.Keys(owner))
	if !slices.Equal(got, want) {
		ok = false
		fmt.Fprintf(&b, "owned %v, want %v", got, want)
	}
	return ok, b.String()
}

// tableAgrees reports whether the work lease table names, as the owner of
// each wanted tenant's bucket, the member that counts on the tenant, and
// whether every member counts on one tenant at least.
func tableAgrees(t *testing.T, table string, members []*poolMember, want []string) (bool, string) {
	t.Helper()
	st := &leasetable.Table{DB: emulators.SharedDynamoDBClient(t), Name: table, Group: work.Group("reports"), Owner: "e2e-test"}
	leases, err := st.List(context.Background())
	if err != nil {
		t.Fatalf("listing %s: %v", table, err)
	}
	owner := map[int]string{}
	for _, l := range leases {
		if b, err := strconv.Atoi(strings.TrimPrefix(l.Key, "b/")); err == nil && strings.HasPrefix(l.Key, "b/") {
			owner[b] = l.Owner
		}
	}
	now := time.Now()
	counted := map[string]string{}
	for _, m := range members {
		owned := m.owned(now)
		if len(owned) == 0 {
			return false, m.id + " counts on no tenant"
		}
		for id := range owned {
			counted[id] = m.id
		}
	}
	for _, id := range want {
		if b := work.Bucket(id); owner[b] != counted[id] {
			return false, fmt.Sprintf("%s's bucket %d is %q's in %s, and %q counts on it", id, b, owner[b], table, counted[id])
		}
	}
	return true, ""
}

// TestWorkAWS runs the tenant work pools on the AWS topology, every binary
// its own process against the emulators: catalog, streamer publish, an
// applier per region, two tcs nodes in us-east-1 and one in eu-west-1, all
// keeping the pool's leases in the home region's <prefix>-work-leases
// table. Four members join pool "reports" through tcs/client: m1 through
// node us-1 only, m2 through us-1 then us-2, m3 through us-2, m4 with
// RunPerTenant through eu-west-1. It checks that
//   - every ACTIVE tenant is owned by exactly one member, every member owns
//     some, and the work lease table names each tenant's owner as the
//     owner of the tenant's bucket;
//   - a tenant created through the catalog is assigned, one suspended and
//     one deleted are dropped;
//   - killing node us-1 with SIGKILL and member m1 with it moves m1's
//     tenants to the others (its buckets expire a lease duration after
//     their last renewal) while m2 rejoins through us-2 and owns tenants
//     again, and every ACTIVE tenant is owned again by exactly one live
//     member, as the table says;
//   - Validate refuses m1's tokens after the takeover, naming the new
//     owner's;
//   - at no sampled instant of the whole run did two members count on one
//     tenant.
func TestWorkAWS(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs the AWS topology on the emulators, every binary a process")
	}
	bin := buildBinaries(t)
	emu := emulators.SharedAWS(t)
	names := provision.Names{Prefix: emulators.Name("work")}
	regions := []string{"us-east-1", "eu-west-1"}
	plan := provision.Plan{Names: names, HomeRegion: "us-east-1", Regions: regions, Shards: 2}
	var out strings.Builder
	if err := provision.Apply(context.Background(), plan, provisionClients(t, emu), &out); err != nil {
		t.Fatalf("provision: %v\n%s", err, out.String())
	}

	env := os.Environ()
	for k, v := range emu.Env() {
		env = append(env, k+"="+v)
	}
	env = append(env, "TCS_BACKEND=aws", "TCS_AWS_PREFIX="+names.Prefix, "TCS_POLL_INTERVAL=100ms",
		"TCS_ADMIN_TOKEN=dev-admin-token", "TCS_READER_TOKEN=dev-reader-token", "TCS_LOOKUP_TOKEN=dev-lookup-token", "TCS_SCAN_TOKEN=dev-scan-token",
		"TCS_LOG_LEVEL=info")
	tp := &topology{t: t, bin: bin, env: env, logs: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", tp.dump())
		}
	})
	addr := func() string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }
	catalogAddr := addr()
	tp.start("catalog", "catalog", "--addr", catalogAddr, "--metrics-addr", "none")
	tp.start("publish", "streamer", "publish", "--worker-id", "publish-1", "--metrics-addr", "none")
	for _, r := range regions {
		tp.start("apply-"+r, "streamer", "apply", "--region", r, "--worker-id", "apply-"+r, "--metrics-addr", "none")
	}
	lease := "--work-lease-duration=" + workLease.String()
	us1, us2, eu := addr(), addr(), addr()
	nodeUS1 := tp.start("tcs-us-1", "tcs", "--region", "us-east-1", "--addr", us1, "--node-id", "us-1", "--metrics-addr", "none", lease)
	tp.start("tcs-us-2", "tcs", "--region", "us-east-1", "--addr", us2, "--node-id", "us-2", "--metrics-addr", "none", lease)
	tp.start("tcs-eu", "tcs", "--region", "eu-west-1", "--addr", eu, "--node-id", "eu-1", "--metrics-addr", "none", lease)
	for _, a := range []string{us1, us2, eu} {
		tp.serving(a)
	}

	api, err := httpclient.New("http://"+catalogAddr, httpclient.WithToken("dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, time.Minute, 50*time.Millisecond, "the catalog to answer", func() (bool, string) {
		tp.alive()
		res, err := http.Get("http://" + catalogAddr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, res.Status
	})
	// 32 tenants: each of 4 members holds a quarter of the buckets, so the
	// member killed owns none of them once in about 10,000 runs.
	active := map[string]bool{}
	for i := range 32 {
		id := fmt.Sprintf("tenant-%02d", i)
		if _, err := api.Create(context.Background(), json.RawMessage(fmt.Sprintf(`{"id":%q,"hostnames":["%s.example.com"]}`, id, id))); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
		active[id] = true
	}
	want := func() []string { return slices.Sorted(maps.Keys(active)) }

	m1 := joinPool(t, "m1", []string{us1}, false)
	m2 := joinPool(t, "m2", []string{us1, us2}, false)
	m3 := joinPool(t, "m3", []string{us2}, false)
	m4 := joinPool(t, "m4", []string{eu}, true)
	members := []*poolMember{m1, m2, m3, m4}
	violations := worktest.WatchOverlaps(t, func(now time.Time) map[string]map[string]uint64 {
		out := map[string]map[string]uint64{}
		for _, m := range members {
			out[m.id] = m.owned(now)
		}
		return out
	})
	settled := func(what string, members []*poolMember, dead ...*proc) {
		t.Helper()
		testwait.Until(t, 90*time.Second, 20*time.Millisecond, what, func() (bool, string) {
			tp.alive(dead...)
			return ownedExactlyOnce(members, want())
		})
	}
	settled("every ACTIVE tenant to be owned by exactly one member", members)
	testwait.Until(t, 30*time.Second, 100*time.Millisecond, "the work lease table to name the owners, every member owning tenants", func() (bool, string) {
		return tableAgrees(t, names.WorkLeaseTable(), members, want())
	})

	// Catalog changes reach the assignments through each region's replica.
	if _, err := api.Create(context.Background(), json.RawMessage(`{"id":"newcomer","hostnames":["newcomer.example.com"]}`)); err != nil {
		t.Fatal(err)
	}
	active["newcomer"] = true
	if _, err := api.Patch(context.Background(), "tenant-00", 1, httpclient.MergePatch{"status": "SUSPENDED"}); err != nil {
		t.Fatal(err)
	}
	delete(active, "tenant-00")
	if err := api.Delete(context.Background(), "tenant-01", 0); err != nil {
		t.Fatal(err)
	}
	delete(active, "tenant-01")
	settled("newcomer to be owned, tenant-00 (suspended) and tenant-01 (deleted) dropped", members)

	// m1's tenants and tokens, valid before the crash.
	conn, err := grpc.NewClient(us2, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(bearer("dev-lookup-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	validate := worktest.Validator(t, conn, "reports")
	old := m1.owned(time.Now())
	if len(old) == 0 {
		t.Fatalf("m1 owns no tenant before the crash: %s", func() string { _, s := ownedExactlyOnce(members, want()); return s }())
	}
	for id, tok := range old {
		if res := validate(id, tok); !res.Valid || res.Owner != "m1" {
			t.Fatalf("Validate(%s, %d) of its owner m1 = %v", id, tok, res)
		}
	}

	// Node us-1 and member m1 die together: nobody releases m1's buckets,
	// which expire; m2 joins again through us-2 under its own id.
	crash := time.Now()
	nodeUS1.kill(t)
	m1.kill()
	live := []*poolMember{m2, m3, m4}
	settled("m1's tenants to move to the live members", live, nodeUS1)
	t.Logf("after node us-1 and member m1 died, every ACTIVE tenant was owned by a live member again within %v (lease %v)", time.Since(crash).Round(10*time.Millisecond), workLease)
	now := time.Now()
	current := map[string]uint64{}
	for _, m := range live {
		maps.Copy(current, m.owned(now))
	}
	for id, tok := range old {
		if !active[id] {
			continue
		}
		if res := validate(id, tok); res.Valid || res.Owner == "m1" || res.CurrentToken == tok || res.CurrentToken != current[id] {
			t.Errorf("Validate(%s, %d) after m1 died = %v; want refused, the current owner's token %d", id, tok, res, current[id])
		}
	}
	// The table names the live members, m1 none of the ACTIVE tenants'
	// buckets, and m2 owns tenants again (through us-2).
	testwait.Until(t, 30*time.Second, 100*time.Millisecond, "the work lease table to name the live owners, every live member owning tenants", func() (bool, string) {
		return tableAgrees(t, names.WorkLeaseTable(), live, want())
	})
	for _, v := range violations() {
		t.Error(v)
	}
	m4.mu.Lock()
	runs := m4.runs
	m4.mu.Unlock()
	if runs == 0 {
		t.Error("m4's RunPerTenant ran nothing")
	}
	tp.alive(nodeUS1)
}

// bearer sends a token with every call, over plaintext (loopback).
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }

// provisionClients are the SDK clients of provision.Apply, through the
// default chain that emu.Setenv points at the emulators.
func provisionClients(t *testing.T, emu emulators.AWS) provision.Clients {
	t.Helper()
	emu.Setenv(t)
	return provision.NewClients(func(region string) aws.Config {
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	})
}
