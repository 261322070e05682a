package work_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/lease/memlease"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
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
