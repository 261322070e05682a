package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	catalogdynamo "github.com/tcs-dev/tcs/catalog/dynamo"
	"github.com/tcs-dev/tcs/catalog/storetest"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/infra/provision"
	"github.com/tcs-dev/tcs/internal/freeport"
	"github.com/tcs-dev/tcs/internal/testio"
	"github.com/tcs-dev/tcs/internal/testwait"
	replicadynamo "github.com/tcs-dev/tcs/tcs/dynamo"
)

// childEnv makes the test binary run the streamer command in its
// arguments (after "--") instead of the tests: a real process, which a test
// can kill -9.
const childEnv = "TCS_STREAMER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"streamer"}, os.Args[i+1:]...)
				break
			}
		}
		main()
		os.Exit(0)
	}
	os.Exit(emulators.Main(m))
}

// child is streamer run as a process of its own.
type child struct {
	cmd     *exec.Cmd
	metrics string
	out     *testio.SyncBuffer
	done    chan struct{}
}

func startChild(t *testing.T, env []string, args ...string) *child {
	t.Helper()
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{metrics: fmt.Sprintf("127.0.0.1:%d", port), out: &testio.SyncBuffer{}, done: make(chan struct{})}
	args = append(args, "--metrics-addr", c.metrics)
	c.cmd = exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	c.cmd.Env = append(env, childEnv+"=1")
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.done)
		_ = c.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(15 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("streamer %v:\n%s", args, c.out.String())
		}
	})
	return c
}

// metric returns the value of a series of the child's /metrics, summed
// over the series whose text starts with name (-1 if unreachable).
func (c *child) metric(t *testing.T, name string) float64 {
	t.Helper()
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.metrics + "/metrics")
	if err != nil {
		return -1 // not listening yet, or killed
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return -1
	}
	body := string(b)
	var sum float64
	for line := range strings.Lines(body) {
		if strings.HasPrefix(line, name) {
			var v float64
			f := strings.Fields(line)
			if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}

// TestPublisherFailover: two publishers share the outbox's shards on the
// AWS backends (DynamoDB Local, kinesalite); one is killed with -9 while
// writes flow; the other takes its shards over within the lease period and
// every committed change arrives in every region.
func TestPublisherFailover(t *testing.T) {
	emu := emulators.SharedAWS(t)
	emu.Setenv(t)
	names := provision.Names{Prefix: emulators.Name("pubfail")}
	regions := []string{"us-east-1", "eu-west-1"}
	clients := provision.NewClients(func(region string) aws.Config {
		cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	})
	var out bytes.Buffer
	if err := provision.Apply(t.Context(), provision.Plan{Names: names, HomeRegion: "us-east-1", Regions: regions, Shards: 2}, clients, &out); err != nil {
		t.Fatalf("provision: %v\n%s", err, &out)
	}
	env := os.Environ()
	env = append(env, "TCS_BACKEND=aws", "TCS_AWS_PREFIX="+names.Prefix, "TCS_POLL_INTERVAL=100ms", "TCS_PUBLISH_LEASE_DURATION=3s")
	getenv := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		return ""
	}

	// The appliers run in this process; the publishers are processes.
	ctx, cancel := context.WithCancel(context.Background())
	var appliers sync.WaitGroup
	t.Cleanup(func() { cancel(); appliers.Wait() })
	for _, r := range regions {
		appliers.Go(func() {
			var stderr testio.SyncBuffer
			if err := run(ctx, []string{"apply", "--region", r, "--metrics-addr", ""}, getenv, io.Discard, &stderr); err != nil && ctx.Err() == nil {
				t.Errorf("streamer apply --region %s: %v\n%s", r, err, stderr.String())
			}
		})
	}
	a := startChild(t, env, "publish", "--worker-id", "a")
	b := startChild(t, env, "publish", "--worker-id", "b")
	shards := float64(catalogdynamo.Shards)
	testwait.Within(t, 30*time.Second, "the two publishers to share the outbox's shards", func() bool {
		ha, hb := a.metric(t, "tcs_publish_leases_held"), b.metric(t, "tcs_publish_leases_held")
		return ha > 0 && hb > 0 && ha+hb == shards
	})

	db := dynamodb.NewFromConfig(mustConfig(t, "us-east-1"))
	store, err := catalogdynamo.Open(t.Context(), catalogdynamo.Config{Client: db, Table: names.CatalogTable()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Writes flow before, during and after the kill: each tenant created,
	// then updated once.
	const tenants = 120
	write := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			id := fmt.Sprintf("t%03d", i)
			created, err := store.Create(t.Context(), storetest.NewTenant(id), "test")
			if err != nil {
				t.Fatalf("create %s: %v", id, err)
			}
			created.Labels = map[string]string{"n": id}
			if _, err := store.Update(t.Context(), created, created.Version, "test"); err != nil {
				t.Fatalf("update %s: %v", id, err)
			}
		}
	}
	write(0, tenants/3)
	// Kill a while it publishes (its shards get writes all along).
	var wg sync.WaitGroup
	wg.Go(func() { write(tenants/3, 2*tenants/3) })
	testwait.Within(t, 30*time.Second, "publisher a to have published some", func() bool {
		return a.metric(t, "tcs_publish_events_total") > 0
	})
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	killed := time.Now()
	wg.Wait()
	write(2*tenants/3, tenants)

	testwait.Within(t, 60*time.Second, "publisher b to take over every shard", func() bool {
		return b.metric(t, "tcs_publish_leases_held") == shards
	})
	t.Logf("b held every shard %v after a was killed (lease duration 3s)", time.Since(killed).Round(100*time.Millisecond))
	if n := b.metric(t, `tcs_publish_lease_events_total{component="publish",event="takeover"}`); n < 1 {
		t.Errorf("b counted %v takeovers, want at least 1", n)
	}

	for _, r := range regions {
		rep, err := replicadynamo.Open(t.Context(), replicadynamo.Config{Client: dynamodb.NewFromConfig(mustConfig(t, r)), Table: names.ReplicaTable(r)})
		if err != nil {
			t.Fatal(err)
		}
		missing := func() []string {
			var m []string
			for i := range tenants {
				id := fmt.Sprintf("t%03d", i)
				got, err := rep.GetTenant(t.Context(), id)
				if err != nil || got.Version != 2 || got.Deleted() {
					m = append(m, id)
				}
			}
			return m
		}
		testwait.Until(t, 60*time.Second, 200*time.Millisecond, "every committed change to reach "+r, func() (bool, string) {
			m := missing()
			return len(m) == 0, fmt.Sprintf("%d tenants missing or behind, e.g. %v", len(m), m[:min(len(m), 5)])
		})
		rep.Close()
	}
}

func mustConfig(t *testing.T, region string) aws.Config {
	t.Helper()
	cfg, err := awsconfig.LoadDefaultConfig(context.Background(), awsconfig.WithRegion(region))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
