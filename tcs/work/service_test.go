package work_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/lease/memlease"
	"github.com/tcs-dev/tcs/internal/testwait"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/work"
	"github.com/tcs-dev/tcs/tcs/work/worktest"
)

// TestServiceMem runs the work suite over an in-memory lease table.
func TestServiceMem(t *testing.T) {
	t.Parallel()
	worktest.Suite(t, time.Second, func(t *testing.T) work.Leases { return worktest.Mem(memlease.New(nil)) })
}

// TestJoinRefusals: malformed joins are refused naming the field.
func TestJoinRefusals(t *testing.T) {
	t.Parallel()
	n := worktest.Start(t, worktest.Mem(memlease.New(nil)), time.Second)
	for _, c := range []struct {
		name string
		req  *tcsv1.JoinRequest
		code codes.Code
		want string
	}{
		{"heartbeat first", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: 1}}}, codes.FailedPrecondition, "first message"},
		{"bad pool", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "Reports!", Member: "m"}}}, codes.InvalidArgument, `pool "Reports!"`},
		{"no member", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports"}}}, codes.InvalidArgument, `member ""`},
		{"negative capacity", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m", Capacity: -1}}}, codes.InvalidArgument, "capacity -1"},
		{"negative cap", &tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m", MaxConcurrent: -2}}}, codes.InvalidArgument, "max_concurrent -2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stream, err := n.Work.Join(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(c.req); err != nil {
				t.Fatal(err)
			}
			_, err = stream.Recv()
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.want) {
				t.Errorf("Join(%v) = %v; want %v naming %q", c.req, err, c.code, c.want)
			}
		})
	}
	if _, err := n.Work.Validate(context.Background(), &tcsv1.ValidateRequest{Pool: "reports"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Validate without a tenant = %v; want InvalidArgument", err)
	}
}

// TestAppliedSeqBeyondSent: a heartbeat echoing an assignment the node
// never sent ends the stream with INVALID_ARGUMENT naming applied_seq,
// instead of handing buckets over on its word.
func TestAppliedSeqBeyondSent(t *testing.T) {
	t.Parallel()
	n := worktest.Start(t, worktest.Mem(memlease.New(nil)), time.Second, "tenant-1")
	ctx, cancel := context.WithTimeout(testwait.Context(t), 10*time.Second)
	defer cancel()
	stream, err := n.Work.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m"}}}); err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetAssignmentSeq() != 1 {
		t.Fatalf("the first assignment's assignment_seq is %d, want 1", first.GetAssignmentSeq())
	}
	beyond := first.GetAssignmentSeq() + 1000
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: 1, AppliedSeq: beyond}}}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := stream.Recv()
		if err == nil {
			continue
		}
		if want := fmt.Sprintf("applied_seq %d", beyond); status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("after echoing an assignment never sent: %v; want InvalidArgument naming %q", err, want)
		}
		return
	}
}

// TestRoleRequired: a tcs node serves the WorkService behind the lookup
// server's authentication (lookup.Policy, the interceptors lookup.Serve
// installs): Join and Validate refuse a caller without credentials or with
// an unknown token (UNAUTHENTICATED) and callers of the other roles
// (PERMISSION_DENIED, without naming the credential), and let a caller of
// the lookup role through.
func TestRoleRequired(t *testing.T) {
	t.Parallel()
	tokens := map[auth.Role]string{auth.Admin: "t-admin", auth.Reader: "t-reader", auth.Lookup: "t-lookup", auth.ReplicaScan: "t-scan"}
	var lines []string
	for r, tok := range tokens {
		lines = append(lines, auth.Line(r, tok, "owner-of-"+string(r)))
	}
	set, err := auth.Parse(strings.NewReader(strings.Join(lines, "\n")), "test credentials")
	if err != nil {
		t.Fatal(err)
	}
	n := worktest.StartWith(t, worktest.Mem(memlease.New(nil)), time.Second, auth.Static(set).ServerOptions(lookup.Policy(false)), "tenant-1")
	as := func(token string) context.Context {
		ctx, cancel := context.WithTimeout(testwait.Context(t), 10*time.Second)
		t.Cleanup(cancel)
		if token == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	join := func(token string) error {
		ctx, cancel := context.WithCancel(as(token))
		defer cancel()
		stream, err := n.Work.Join(ctx)
		if err != nil {
			return err
		}
		// A refused stream may be closed before the join is sent: its
		// status comes from Recv.
		_ = stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m-" + token}}})
		_, err = stream.Recv()
		return err
	}
	validate := func(token string) error {
		_, err := n.Work.Validate(as(token), &tcsv1.ValidateRequest{Pool: "reports", TenantId: "tenant-1", Token: 1})
		return err
	}
	for _, c := range []struct {
		name string
		call func(token string) error
	}{{"Join", join}, {"Validate", validate}} {
		for _, tok := range []string{"", "not-anybodys-token"} {
			if err := c.call(tok); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s with token %q: %v, want UNAUTHENTICATED", c.name, tok, err)
			}
		}
		for r, tok := range tokens {
			err := c.call(tok)
			switch {
			case r == auth.Lookup && err != nil:
				t.Errorf("%s as %s: %v, want served", c.name, r, err)
			case r != auth.Lookup && status.Code(err) != codes.PermissionDenied:
				t.Errorf("%s as %s: %v, want PERMISSION_DENIED", c.name, r, err)
			case r != auth.Lookup && strings.Contains(err.Error(), "owner-of-"):
				t.Errorf("%s as %s: the refusal names the credential: %v", c.name, r, err)
			}
		}
	}
}

// gauge returns the value of gauge name with label pool in reg, and
// whether the series exists.
func gauge(t *testing.T, reg *prometheus.Registry, name, pool string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" && l.GetValue() == pool {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestPoolMetrics: tcs_work_members counts a pool's members by pool and
// stays at 0 once the last one left; tcs_work_unowned_tenants is 0 while a
// member holds every bucket, counts every tenant once its only member
// stopped heartbeating past its lease, and is gone once it left.
func TestPoolMetrics(t *testing.T) {
	t.Parallel()
	const d = time.Second
	ids := []string{"tenant-1", "tenant-2", "tenant-3", "tenant-4", "tenant-5"}
	n := worktest.Start(t, worktest.Mem(memlease.New(nil)), d, ids...)
	ctx, cancel := context.WithCancel(testwait.Context(t))
	defer cancel()
	stream, err := n.Work.Join(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Join{Join: &tcsv1.Join{Pool: "reports", Member: "m1"}}}); err != nil {
		t.Fatal(err)
	}
	var beating atomic.Bool
	beating.Store(true)
	go func() {
		tick := time.NewTicker(d / 6) // the member's heartbeat period
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if beating.Load() {
				_ = stream.Send(&tcsv1.JoinRequest{Msg: &tcsv1.JoinRequest_Heartbeat{Heartbeat: &tcsv1.WorkHeartbeat{Seq: seq}}})
			}
		}
	}()
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				return
			}
		}
	}()
	series := func(name string, want float64) func() (bool, string) {
		return func() (bool, string) {
			v, ok := gauge(t, n.Metrics, name, "reports")
			return ok && v == want, fmt.Sprintf("%s{pool=reports} = %v (exists %v), want %v", name, v, ok, want)
		}
	}
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "one member, nothing unowned", func() (bool, string) {
		if ok, why := series("tcs_work_members", 1)(); !ok {
			return false, why
		}
		return series("tcs_work_unowned_tenants", 0)()
	})
	beating.Store(false)
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "every tenant unowned once the member froze", series("tcs_work_unowned_tenants", float64(len(ids))))
	cancel()
	testwait.Until(t, 20*time.Second, 10*time.Millisecond, "no member, no unowned series", func() (bool, string) {
		if ok, why := series("tcs_work_members", 0)(); !ok {
			return false, why
		}
		_, exists := gauge(t, n.Metrics, "tcs_work_unowned_tenants", "reports")
		return !exists, "tcs_work_unowned_tenants{pool=reports} still exists"
	})
}
