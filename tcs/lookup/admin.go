package lookup

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tcs-dev/tcs/internal/auth"
	"github.com/tcs-dev/tcs/internal/digest"

	adminv1 "github.com/tcs-dev/tcs/proto/tcs/admin/v1"
	tcsv1 "github.com/tcs-dev/tcs/proto/tcs/v1"
	"github.com/tcs-dev/tcs/tcs"
)

// MaxScanLimit caps ScanRequest.limit: a page of that many tenant documents
// stays well under a client's default 4 MB receive limit for documents of
// ordinary size.
const MaxScanLimit = 1000

// MaxScanCursor caps ScanRequest.cursor's length: a cursor the server hands
// out names one key (a hostname or tenant id, encoded), well under it.
const MaxScanCursor = 1024

// checkCursor refuses a cursor no server could have handed out for its
// length, before it reaches the replica (or a log line).
func checkCursor(cursor string) error {
	if len(cursor) <= MaxScanCursor {
		return nil
	}
	return status.Errorf(codes.InvalidArgument, "cursor: %d bytes; a cursor is at most %d: pass back the next_cursor of the previous page", len(cursor), MaxScanCursor)
}

// adminServer is tcs.admin.v1.ReplicaAdmin over the region's replica: reads
// straight from the table, never from the cache, for callers authenticated
// with the replica-scan role.
type adminServer struct {
	adminv1.UnimplementedReplicaAdminServer
	s       *Server
	scanner tcs.Scanner
}

var _ adminv1.ReplicaAdminServer = (*adminServer)(nil)

func newAdminServer(s *Server, scanner tcs.Scanner) *adminServer {
	return &adminServer{s: s, scanner: scanner}
}

// Admin returns the ReplicaAdmin service, or nil when Config.ReplicaAdmin
// is off or the replica is not a tcs.Scanner. Register registers it.
func (s *Server) Admin() adminv1.ReplicaAdminServer {
	if s.admin == nil {
		return nil
	}
	return s.admin
}

// authorize checks that the server's authentication (ServeOptions.Auth,
// whose Policy already demands it) established a replica-scan caller: the
// service reads every tenant document, so a server without authentication
// refuses every call rather than serving them to anyone.
func (a *adminServer) authorize(ctx context.Context) error {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "missing credentials: the replica admin API needs a replica-scan credential")
	}
	if !id.Role.Allows(auth.ReplicaScan) {
		return status.Error(codes.PermissionDenied, "permission denied: this method needs role replica-scan")
	}
	return nil
}

func scanLimit(n int32) int {
	return int(min(n, MaxScanLimit))
}

// ScanDocs implements ReplicaAdmin.ScanDocs.
func (a *adminServer) ScanDocs(ctx context.Context, req *adminv1.ScanRequest) (*adminv1.ScanDocsResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	if err := checkCursor(req.GetCursor()); err != nil {
		return nil, err
	}
	docs, next, err := a.scanner.ScanDocs(ctx, req.GetCursor(), scanLimit(req.GetLimit()))
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	resp := &adminv1.ScanDocsResponse{Docs: make([]*tcsv1.Tenant, len(docs)), NextCursor: next, Region: a.s.region}
	for i, d := range docs {
		resp.Docs[i] = tcsv1.TenantToProto(d)
	}
	return resp, nil
}

// ScanHosts implements ReplicaAdmin.ScanHosts.
func (a *adminServer) ScanHosts(ctx context.Context, req *adminv1.ScanRequest) (*adminv1.ScanHostsResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	if err := checkCursor(req.GetCursor()); err != nil {
		return nil, err
	}
	hosts, next, err := a.scanner.ScanHosts(ctx, req.GetCursor(), scanLimit(req.GetLimit()))
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	resp := &adminv1.ScanHostsResponse{Hosts: make([]*adminv1.HostEntry, len(hosts)), NextCursor: next, Region: a.s.region}
	for i, h := range hosts {
		resp.Hosts[i] = &adminv1.HostEntry{Hostname: h.Hostname, TenantId: h.TenantID, ClaimVersion: h.ClaimVersion}
	}
	return resp, nil
}

// Digests implements ReplicaAdmin.Digests: the replica's bucket digests,
// computed by reading the whole replica here, so that only 32 KiB cross the
// wire.
func (a *adminServer) Digests(ctx context.Context, _ *adminv1.DigestsRequest) (*adminv1.DigestsResponse, error) {
	if err := a.authorize(ctx); err != nil {
		return nil, err
	}
	scan, err := digest.ScanRegion(ctx, a.scanner, digest.ScanOptions{PageSize: MaxScanLimit})
	if err != nil {
		return nil, a.s.status(err).Err()
	}
	return &adminv1.DigestsResponse{Buckets: scan.Table[:], Records: int64(scan.Reads), Region: a.s.region}, nil
}
