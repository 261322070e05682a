package adminclient_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/digest"
	"github.com/tcs-dev/tcs/tcs/lookup/adminclient"
)

// TestDigestsMatchReplica: the digests a tcs node computes are those of its
// replica read locally, and only a replica-scan caller gets them.
func TestDigestsMatchReplica(t *testing.T) {
	t.Parallel()
	rep := replica(t)
	want, err := digest.ScanRegion(context.Background(), rep, digest.ScanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := adminclient.New(serve(t, rep, true), "eu-west-1")
	got, records, err := s.Digests(withToken(t, scanToken))
	if err != nil {
		t.Fatal(err)
	}
	if d := digest.Diff(&want.Table, got); len(d) != 0 {
		t.Errorf("buckets %v differ from the replica's own digests", d)
	}
	if records != 6 {
		t.Errorf("records read = %d, want 6 (3 documents, 3 hostnames)", records)
	}
	if _, _, err := s.Digests(withToken(t, lookupToken)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Digests with a lookup token: %v, want PermissionDenied", err)
	}
	if _, _, err := adminclient.New(serve(t, rep, false), "eu-west-1").Digests(withToken(t, scanToken)); status.Code(err) != codes.Unimplemented {
		t.Errorf("Digests of a node without the admin API: %v, want Unimplemented", err)
	}
}
