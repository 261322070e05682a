package lookup_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/testwait"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	"github.com/tcs-dev/tcs/tcs/lookup"
	"github.com/tcs-dev/tcs/tcs/replicatest"
)

// TestHostileReplicaAdmin is ReplicaAdmin's hostile-input table (the
// credential cases are TestReplicaAdmin's and TestEveryMethodAuthenticated's):
// each case is an attack by a caller holding a replica-scan credential and
// its bounded outcome.
func TestHostileReplicaAdmin(t *testing.T) {
	t.Parallel()
	rep := boltReplica(t)
	ctx := testwait.Context(t)
	for i := range 30 {
		id := fmt.Sprintf("t%02d", i)
		if _, err := rep.Apply(ctx, replicatest.Event(id, 1, map[string]int64{id + ".example.com": 1}, nil)); err != nil {
			t.Fatal(err)
		}
	}
	e := start(t, lookup.Config{Replica: rep, Region: "eu-west-1", ReplicaAdmin: true},
		lookup.ServeOptions{Auth: testAuth(t, auth.Line(auth.ReplicaScan, "scan", "verify"))})
	admin := adminv1.NewReplicaAdminClient(e.conn)
	sctx := bearer(ctx, "Bearer scan")

	for _, tc := range []struct {
		attack string
		req    *adminv1.ScanRequest
		code   codes.Code
		// maxPage bounds the documents or hosts one answer may carry.
		maxPage int
	}{
		{"a forged cursor past the last key", &adminv1.ScanRequest{Cursor: strings.Repeat("\u007f", 64)}, codes.OK, 0},
		{"a forged cursor before the first key", &adminv1.ScanRequest{Cursor: "\x01", Limit: 5}, codes.OK, 5},
		// Refused by the server's receive limit before any handler runs.
		{"a 1 MiB cursor", &adminv1.ScanRequest{Cursor: strings.Repeat("a", 1<<20)}, codes.ResourceExhausted, 0},
		{"a cursor one byte over the cap", &adminv1.ScanRequest{Cursor: strings.Repeat("a", lookup.MaxScanCursor+1)}, codes.InvalidArgument, 0},
		{"the largest limit", &adminv1.ScanRequest{Limit: 1<<31 - 1}, codes.OK, lookup.MaxScanLimit},
		{"a negative limit", &adminv1.ScanRequest{Limit: -1 << 31}, codes.OK, lookup.MaxScanLimit},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			docs, err := admin.ScanDocs(sctx, tc.req)
			hosts, herr := admin.ScanHosts(sctx, tc.req)
			for name, e := range map[string]error{"ScanDocs": err, "ScanHosts": herr} {
				if got := status.Code(e); got != tc.code {
					t.Errorf("%s: %v, want %v", name, e, tc.code)
				}
				if tc.code == codes.InvalidArgument && !strings.Contains(status.Convert(e).Message(), "cursor") {
					t.Errorf("%s: %q does not name the cursor", name, status.Convert(e).Message())
				}
				if len(status.Convert(e).Message()) > 512 {
					t.Errorf("%s: a %d-byte error message (the cursor echoed?)", name, len(status.Convert(e).Message()))
				}
			}
			if n := len(docs.GetDocs()); n > tc.maxPage {
				t.Errorf("ScanDocs: %d documents, want at most %d", n, tc.maxPage)
			}
			if n := len(hosts.GetHosts()); n > tc.maxPage {
				t.Errorf("ScanHosts: %d hosts, want at most %d", n, tc.maxPage)
			}
		})
	}

	// A thousand refused scans leave nothing behind.
	before := runtime.NumGoroutine()
	big := &adminv1.ScanRequest{Cursor: strings.Repeat("a", 64<<10)}
	for range 1000 {
		if _, err := admin.ScanDocs(sctx, big); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("oversize cursor: %v", err)
		}
	}
	if after := runtime.NumGoroutine(); after > before+10 {
		t.Errorf("goroutines %d → %d after 1,000 refused scans", before, after)
	}
}
