// Package adminclient is the client of a tcs node's replica admin API
// (tcs.admin.v1.ReplicaAdmin, served by tcs/lookup for callers with the
// replica-scan role): a region's replica, read remotely page by page, as a
// tcs.Scanner returning domain values. tcsctl verify and repair read the
// regions through it (see tcs/drift).
//
// The caller owns the gRPC connection, its transport security and its
// credentials (a bearer token of role replica-scan in the "authorization"
// metadata).
package adminclient

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/catalog/tenant"
	"github.com/tcs-dev/tcs/internal/digest"
	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
)

// Scanner is a tcs.Scanner over a region's ReplicaAdmin API.
type Scanner struct {
	region    string
	c         adminv1.ReplicaAdminClient
	tokenHint string
}

var _ tcs.Scanner = (*Scanner)(nil)

// Option configures a Scanner.
type Option func(*Scanner)

// WithTokenHint names where the caller's replica-scan token comes from
// (e.g. "--scan-token / TCS_SCAN_TOKEN"), for the hint an Unauthenticated
// error carries. The default is "the token".
func WithTokenHint(where string) Option { return func(s *Scanner) { s.tokenHint = where } }

// New returns the Scanner of region's replica over cc, a connection to one
// of the region's tcs nodes. region names it in errors.
func New(cc grpc.ClientConnInterface, region string, opts ...Option) *Scanner {
	s := &Scanner{region: region, c: adminv1.NewReplicaAdminClient(cc), tokenHint: "the token"}
	for _, o := range opts {
		o(s)
	}
	return s
}

// ScanDocs returns up to limit stored documents, tombstones included, in id
// order after cursor, and the cursor of the next page ("" at the end).
func (s *Scanner) ScanDocs(ctx context.Context, cursor string, limit int) ([]*tenant.Tenant, string, error) {
	res, err := s.c.ScanDocs(ctx, &adminv1.ScanRequest{Cursor: cursor, Limit: int32(limit)})
	if err != nil {
		return nil, "", s.explain("ScanDocs", err)
	}
	docs := make([]*tenant.Tenant, 0, len(res.GetDocs()))
	for _, p := range res.GetDocs() {
		t, err := tcsv1.TenantFromProto(p)
		if err != nil {
			return nil, "", fmt.Errorf("%s ScanDocs: tenant %q: %w", s.region, p.GetId(), err)
		}
		docs = append(docs, t)
	}
	return docs, res.GetNextCursor(), nil
}

// ScanHosts returns up to limit hostname records, released ones included,
// in hostname order after cursor, and the cursor of the next page.
func (s *Scanner) ScanHosts(ctx context.Context, cursor string, limit int) ([]tcs.HostEntry, string, error) {
	res, err := s.c.ScanHosts(ctx, &adminv1.ScanRequest{Cursor: cursor, Limit: int32(limit)})
	if err != nil {
		return nil, "", s.explain("ScanHosts", err)
	}
	hosts := make([]tcs.HostEntry, len(res.GetHosts()))
	for i, h := range res.GetHosts() {
		hosts[i] = tcs.HostEntry{Hostname: h.GetHostname(), HostRecord: tcs.HostRecord{TenantID: h.GetTenantId(), ClaimVersion: h.GetClaimVersion()}}
	}
	return hosts, res.GetNextCursor(), nil
}

// explain adds what to do about the usual failures of the admin API. The
// gRPC status stays reachable with status.Code and errors.As.
func (s *Scanner) explain(method string, err error) error {
	hint := ""
	switch status.Code(err) {
	case codes.Unimplemented:
		hint = " (this tcs node does not serve tcs.admin.v1.ReplicaAdmin: give it credentials, e.g. a replica-scan line in its --tokens-file)"
	case codes.Unauthenticated:
		hint = fmt.Sprintf(" (check %s: a token of role replica-scan)", s.tokenHint)
	case codes.PermissionDenied:
		hint = " (the token is not of role replica-scan)"
	}
	return fmt.Errorf("%s: %w%s", method, err, hint)
}

// Digests returns the region's bucket digests (internal/digest), computed by
// the tcs node from its replica, and how many records it read for them.
func (s *Scanner) Digests(ctx context.Context) (*digest.Table, int64, error) {
	res, err := s.c.Digests(ctx, &adminv1.DigestsRequest{})
	if err != nil {
		return nil, 0, s.explain("Digests", err)
	}
	if n := len(res.GetBuckets()); n != digest.Buckets {
		return nil, 0, fmt.Errorf("%s Digests: %d buckets, want %d (a tcs node of another version?)", s.region, n, digest.Buckets)
	}
	var t digest.Table
	copy(t[:], res.GetBuckets())
	return &t, res.GetRecords(), nil
}
