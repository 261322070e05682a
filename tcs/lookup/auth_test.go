package lookup_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
)

// testAuth is an authenticator of credentials file lines.
func testAuth(tb testing.TB, lines ...string) *auth.Authenticator {
	tb.Helper()
	set, err := auth.Parse(strings.NewReader(strings.Join(lines, "\n")), "test credentials")
	if err != nil {
		tb.Fatal(err)
	}
	return auth.Static(set)
}

// TestEveryMethodAuthenticated: a table generated from the service
// descriptors, so that a new RPC cannot be missed: every method of
// TenantContextService and ReplicaAdmin refuses a call without credentials
// or with an unknown token (UNAUTHENTICATED) and one of a role that does
// not allow it (PERMISSION_DENIED, never naming the credential), and lets
// the role it needs through; health stays open.
func TestEveryMethodAuthenticated(t *testing.T) {
	t.Parallel()
	tokens := map[auth.Role]string{auth.Admin: "t-admin", auth.Reader: "t-reader", auth.Lookup: "t-lookup", auth.ReplicaScan: "t-scan"}
	var lines []string
	for r, tok := range tokens {
		lines = append(lines, auth.Line(r, tok, "owner-of-"+string(r)))
	}
	e := start(t, lookup.Config{Replica: boltReplica(t), ReplicaAdmin: true}, lookup.ServeOptions{Auth: testAuth(t, lines...)})
	policy := lookup.Policy(false)

	type method struct {
		name   string
		stream bool
	}
	var methods []method
	for _, sd := range []grpc.ServiceDesc{tcsv1.TenantContextService_ServiceDesc, adminv1.ReplicaAdmin_ServiceDesc} {
		for _, m := range sd.Methods {
			methods = append(methods, method{"/" + sd.ServiceName + "/" + m.MethodName, false})
		}
		for _, m := range sd.Streams {
			methods = append(methods, method{"/" + sd.ServiceName + "/" + m.StreamName, true})
		}
	}
	if len(methods) < 5 {
		t.Fatalf("only %d methods found in the descriptors", len(methods))
	}
	call := func(m method, token string) error {
		ctx, cancel := context.WithTimeout(testwait.Context(t), 300*time.Millisecond)
		defer cancel()
		if token != "" {
			ctx = bearer(ctx, "Bearer "+token)
		}
		if !m.stream {
			return e.conn.Invoke(ctx, m.name, &emptypb.Empty{}, &emptypb.Empty{})
		}
		st, err := e.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, m.name)
		if err != nil {
			return err
		}
		// A refused stream may be closed before the request is sent
		// (SendMsg then says io.EOF): its status comes from RecvMsg.
		_ = st.SendMsg(&emptypb.Empty{})
		st.CloseSend()
		return st.RecvMsg(&emptypb.Empty{})
	}
	for _, m := range methods {
		need, _ := policy.Need(m.name)
		if need == "" {
			t.Errorf("%s: the policy gives it no role", m.name)
			continue
		}
		for _, tok := range []string{"", "not-anybodys-token"} {
			if err := call(m, tok); status.Code(err) != codes.Unauthenticated {
				t.Errorf("%s with token %q: %v, want UNAUTHENTICATED", m.name, tok, err)
			}
		}
		for r, tok := range tokens {
			err := call(m, tok)
			code := status.Code(err)
			switch {
			case r == need && (code == codes.Unauthenticated || code == codes.PermissionDenied):
				t.Errorf("%s as %s: %v, want past authentication", m.name, r, err)
			case r != need && code != codes.PermissionDenied:
				t.Errorf("%s as %s: %v, want PERMISSION_DENIED", m.name, r, err)
			case r != need && strings.Contains(err.Error(), "owner-of-"):
				t.Errorf("%s as %s: the refusal names the credential: %v", m.name, r, err)
			}
		}
	}
	if _, err := healthpb.NewHealthClient(e.conn).Check(testwait.Context(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health without credentials: %v", err)
	}
	// Reflection is off unless asked for.
	st, err := reflectionpb.NewServerReflectionClient(e.conn).ServerReflectionInfo(testwait.Context(t))
	if err == nil {
		st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		_, err = st.Recv()
	}
	if status.Code(err) != codes.PermissionDenied && status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection by default: %v, want refused", err)
	}
}
