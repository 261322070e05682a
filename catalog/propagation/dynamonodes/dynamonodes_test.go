package dynamonodes_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcs-dev/tcs/catalog/propagation"
	"github.com/tcs-dev/tcs/catalog/propagation/dynamonodes"
	"github.com/tcs-dev/tcs/infra/emulators"
	"github.com/tcs-dev/tcs/internal/testclock"
	"github.com/tcs-dev/tcs/internal/testwait"
)

func TestMain(m *testing.M) { os.Exit(emulators.Main(m)) }

// TestRegistry on DynamoDB Local: nodes heartbeat; one that stops is
// dropped after the bound and reported, then forgotten after ten bounds; one
// that stops cleanly is gone at once; a Checker over it sees the live set.
func TestRegistry(t *testing.T) {
	t.Parallel()
	c := emulators.SharedDynamoDBClient(t)
	ctx := testwait.Context(t)
	table := dynamonodes.TableName(emulators.Name("t"))
	if err := dynamonodes.CreateTable(ctx, c, table); err != nil {
		t.Fatal(err)
	}
	if err := dynamonodes.CreateTable(ctx, c, table); err != nil {
		t.Fatalf("CreateTable again: %v", err)
	}
	clk := testclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	reg := dynamonodes.New(c, table, 6*time.Second, clk.Now)
	a := propagation.Node{Region: "eu-west-1", ID: "node-a", Addr: "10.0.0.1:9000"}
	b := propagation.Node{Region: "eu-west-1", ID: "node-b", Addr: "10.0.0.2:9000"}
	u := propagation.Node{Region: "us-east-1", ID: "node-u", Addr: "10.1.0.1:9000"}
	for _, n := range []propagation.Node{a, b, u} {
		if err := reg.Heartbeat(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	live, dropped, err := reg.Nodes(ctx)
	if err != nil || len(live) != 3 || len(dropped) != 0 {
		t.Fatalf("Nodes: %v %v %v; want three live", live, dropped, err)
	}

	clk.Advance(4 * time.Second)
	if err := reg.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := reg.Remove(ctx, u); err != nil {
		t.Fatal(err)
	}
	clk.Advance(4 * time.Second) // b silent for 8 s: past the bound
	live, dropped, err = reg.Nodes(ctx)
	if err != nil || len(live) != 1 || live[0] != a || len(dropped) != 1 || dropped[0].Node != b {
		t.Fatalf("after b stopped: live %v, dropped %v, %v", live, dropped, err)
	}
	if !dropped[0].LastHeartbeat.Equal(clk.Now().Add(-8 * time.Second)) {
		t.Errorf("b's last heartbeat %v, want %v", dropped[0].LastHeartbeat, clk.Now().Add(-8*time.Second))
	}

	checker := &propagation.Checker{Regions: []string{"eu-west-1", "us-east-1"}, Registry: reg,
		Prober: propagation.ProbeFunc(func(context.Context, propagation.Node, string, int64) (propagation.NodeStatus, error) {
			return propagation.NodeStatus{ReplicaVersion: 1, FeedUp: true, Served: true}, nil
		})}
	st, err := checker.Check(ctx, "acme", 1)
	if err != nil || st.Done || len(st.Lagging()) != 1 || st.Lagging()[0] != "us-east-1: no live node" {
		t.Errorf("Check: done %v, lagging %q, %v", st.Done, st.Lagging(), err)
	}

	clk.Advance(time.Minute)
	if err := reg.Heartbeat(ctx, a); err != nil {
		t.Fatal(err)
	}
	if live, dropped, _ = reg.Nodes(ctx); len(live) != 1 || len(dropped) != 0 {
		t.Errorf("after ten bounds: live %v, dropped %v; b forgotten", live, dropped)
	}
}

// TestRun: Run heartbeats until its context ends, then removes the node.
func TestRun(t *testing.T) {
	t.Parallel()
	c := emulators.SharedDynamoDBClient(t)
	ctx := testwait.Context(t)
	table := dynamonodes.TableName(emulators.Name("t"))
	if err := dynamonodes.CreateTable(ctx, c, table); err != nil {
		t.Fatal(err)
	}
	reg := dynamonodes.New(c, table, time.Second, nil)
	n := propagation.Node{Region: "eu-west-1", ID: "node-a", Addr: "10.0.0.1:9000"}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); reg.Run(rctx, n, 50*time.Millisecond, func(err error) { t.Error(err) }) }()
	testwait.For(t, "the node to be live", func() bool {
		live, _, _ := reg.Nodes(ctx)
		return len(live) == 1 && live[0] == n
	})
	stop()
	<-done
	if live, dropped, err := reg.Nodes(ctx); err != nil || len(live)+len(dropped) != 0 {
		t.Errorf("after Run ended: live %v, dropped %v, %v; want none", live, dropped, err)
	}
}

// failingAPI is a table whose writes fail while fail is set.
type failingAPI struct {
	dynamonodes.API
	fail atomic.Bool
}

func (f *failingAPI) PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if f.fail.Load() {
		return nil, errors.New("throttled")
	}
	return &dynamodb.PutItemOutput{}, nil
}

func (f *failingAPI) DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return &dynamodb.DeleteItemOutput{}, nil
}

// TestRunMetrics: Run counts its heartbeats by result and keeps the time
// of the last that succeeded.
func TestRunMetrics(t *testing.T) {
	t.Parallel()
	api := &failingAPI{}
	reg := dynamonodes.New(api, "t-nodes", time.Second, func() time.Time { return time.Unix(1700000000, 0) })
	pr := prometheus.NewRegistry()
	reg.Instrument(pr)
	value := func(name string) float64 {
		mfs, err := pr.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				full := mf.GetName()
				for _, l := range m.GetLabel() {
					full += "{" + l.GetName() + "=" + l.GetValue() + "}"
				}
				if full == name {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
		return 0
	}
	ctx, stop := context.WithCancel(testwait.Context(t))
	var failures atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		reg.Run(ctx, propagation.Node{Region: "eu-west-1", ID: "node-a", Addr: "10.0.0.1:9000"}, 5*time.Millisecond, func(error) { failures.Add(1) })
	}()
	testwait.For(t, "a heartbeat", func() bool { return value("tcs_node_registry_heartbeats_total{result=ok}") >= 1 })
	if got := value("tcs_node_registry_last_heartbeat_timestamp_seconds"); got != 1700000000 {
		t.Errorf("last heartbeat %v, want 1700000000", got)
	}
	api.fail.Store(true)
	testwait.For(t, "failed heartbeats counted", func() bool { return value("tcs_node_registry_heartbeats_total{result=failed}") >= 2 })
	stop()
	<-done
	if got, counted := failures.Load(), value("tcs_node_registry_heartbeats_total{result=failed}"); float64(got) != counted {
		t.Errorf("onError called %d times, failures counted %v", got, counted)
	}
}
