package work_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
